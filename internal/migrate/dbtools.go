// Package migrate moves greylisting state between a Postgrey installation
// and greyd, doing the I/O around internal/postgrey's formats: it runs
// BerkeleyDB's tools on a copy of Postgrey's directory, hands the entries
// to the running greyd through its control socket (after checking that it
// keys them as the configuration does) or writes greyd's buntdb file with
// greyd stopped, and reads greyd's state back, from the daemon or from
// its file, into Postgrey's dumps. Flags, messages and exit statuses are
// cmd/greyd's.
package migrate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// InstallDBTools says how to get the BerkeleyDB utilities.
const InstallDBTools = "install the BerkeleyDB utilities: apt install db5.3-util (Debian, Ubuntu) or dnf install libdb-utils (RHEL, Fedora)"

// dbTools are the names the BerkeleyDB utilities go by: plain on RHEL and
// with Debian's db-util, versioned with Debian's db5.3-util.
var dbTools = [][2]string{{"db_dump", "db_recover"}, {"db5.3_dump", "db5.3_recover"}}

// FindDBTools returns the paths of db_dump and db_recover.
func FindDBTools() (dump, recover string, err error) {
	for _, t := range dbTools {
		d, err1 := exec.LookPath(t[0])
		r, err2 := exec.LookPath(t[1])
		if err1 == nil && err2 == nil {
			return d, r, nil
		}
	}
	return "", "", fmt.Errorf("db_dump not found: %s", InstallDBTools)
}

// DumpPostgreyDir returns `db_dump -p` of Postgrey's databases in dir.
// It never touches dir: the files are copied to a temporary directory,
// where db_recover first applies what is still only in the transaction
// logs (Postgrey commits every request to the log; the .db files lag
// behind until a checkpoint). warn gets what the caller should tell.
func DumpPostgreyDir(dir string, warn func(string)) ([]byte, error) {
	dumpTool, recoverTool, err := FindDBTools()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "postgrey.db")); err != nil {
		return nil, fmt.Errorf("%s is not Postgrey's database directory: %w", dir, err)
	}
	if postgreyRunning(dir) {
		warn(fmt.Sprintf("Postgrey is running on %s; what it writes from now on is not imported (stop Postgrey first)", dir))
	}
	tmp, err := os.MkdirTemp("", "greyd-import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := copyPostgreyDir(dir, tmp); err != nil {
		return nil, err
	}
	if out, err := exec.Command(recoverTool, "-h", tmp).CombinedOutput(); err != nil {
		warn(fmt.Sprintf("%s failed (%v): %s; reading the .db files as they are (the last requests may be missing)",
			filepath.Base(recoverTool), err, strings.TrimSpace(string(out))))
	}
	var all bytes.Buffer
	for _, db := range []string{"postgrey.db", "postgrey_clients.db"} {
		if _, err := os.Stat(filepath.Join(tmp, db)); err != nil {
			continue // no auto-whitelist (--auto-whitelist-clients=0)
		}
		cmd := exec.Command(dumpTool, "-p", "-h", tmp, db)
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &all, &errb
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s -p %s: %v: %s", filepath.Base(dumpTool), filepath.Join(dir, db), err, strings.TrimSpace(errb.String()))
		}
	}
	return all.Bytes(), nil
}

// copyPostgreyDir copies the databases and transaction logs of dir to
// tmp.
func copyPostgreyDir(dir, tmp string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		// The __db.* region files belong to the running environment;
		// db_recover builds new ones.
		if !e.Type().IsRegular() || !(strings.HasSuffix(n, ".db") || strings.HasPrefix(n, "log.")) {
			continue
		}
		if err := copyFile(filepath.Join(dir, n), filepath.Join(tmp, n)); err != nil {
			return err
		}
	}
	return nil
}

// postgreyRunning reports whether a Postgrey holds the lock of dir.
func postgreyRunning(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "postgrey.lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
