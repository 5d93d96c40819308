package reload

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"greyd/internal/config"
)

// fingerprint is the content hash of every input file, by path; a missing
// file has the zero hash, an unreadable one a hash of its error, so that
// appearing, vanishing and becoming readable all count as changes.
type fingerprint map[string][sha256.Size]byte

// inputs lists the files a load of path reads, given configurations that
// name whitelist files (the running one and the last one attempted).
func inputs(path string, cfgs ...*config.Config) []string {
	seen := map[string]bool{}
	var files []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			files = append(files, p)
		}
	}
	fs, err := config.Files(path)
	for _, f := range fs {
		add(f)
	}
	if err != nil {
		// Unreadable: the error, hashed, changes when it is fixed.
		add(path)
		add(filepath.Join(path, config.ConfDir))
	}
	for _, c := range cfgs {
		if c == nil {
			continue
		}
		for _, f := range c.Files {
			add(f)
		}
		for _, f := range c.Whitelist.Clients {
			add(f)
		}
		for _, f := range c.Whitelist.Recipients {
			add(f)
		}
		for _, f := range DynamicNames(c) {
			add(f)
		}
		if c.Trap != nil {
			for _, f := range c.Trap.Recipients {
				add(f)
			}
		}
		if r := c.Database.Redis; r != nil && r.PasswordFile != "" {
			add(r.PasswordFile) // a new password is noticed (it waits for a restart)
		}
	}
	return files
}

func takeFingerprint(files []string) fingerprint {
	fp := make(fingerprint, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		switch {
		case err == nil:
			fp[f] = sha256.Sum256(b)
		case errors.Is(err, fs.ErrNotExist):
			fp[f] = [sha256.Size]byte{}
		default:
			fp[f] = sha256.Sum256([]byte("error: " + err.Error()))
		}
	}
	return fp
}

// changed lists the paths whose hash differs between a and b, sorted.
func changed(a, b fingerprint) []string {
	var out []string
	for p, h := range b {
		if old, ok := a[p]; !ok && h != ([sha256.Size]byte{}) || ok && old != h {
			out = append(out, p)
		}
	}
	for p, h := range a {
		if _, ok := b[p]; !ok && h != ([sha256.Size]byte{}) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// watchDirs returns the directories whose entries matter: the config
// directory and its conf.d (which may come and go), and the directory of
// every whitelist file and of the Redis password file. names are the
// config path itself, watched for events on that name only in its parent
// directory (a swapped symlink, a directory removed and recreated).
func watchDirs(path string, cfgs ...*config.Config) (dirs, names []string) {
	seen := map[string]bool{}
	add := func(list *[]string, d string) {
		if !seen[d] {
			seen[d] = true
			*list = append(*list, d)
		}
	}
	clean := filepath.Clean(path)
	if fi, err := os.Stat(clean); err == nil && fi.IsDir() {
		add(&dirs, clean)
		add(&dirs, filepath.Join(clean, config.ConfDir))
	} else {
		add(&dirs, filepath.Dir(clean))
	}
	for _, c := range cfgs {
		if c == nil {
			continue
		}
		for _, f := range append(append([]string{}, c.Whitelist.Clients...), c.Whitelist.Recipients...) {
			add(&dirs, filepath.Dir(f))
		}
		if c.Trap != nil {
			for _, f := range c.Trap.Recipients {
				add(&dirs, filepath.Dir(f))
			}
		}
		if r := c.Database.Redis; r != nil && r.PasswordFile != "" {
			add(&dirs, filepath.Dir(r.PasswordFile))
		}
	}
	names = append(names, clean)
	return dirs, names
}
