package signals

import (
	"bufio"
	"os"
	"slices"
	"strings"

	"greyd/internal/whitelist"
)

// LoadDynamicNames reads the dynamic_names files in order (typically
// dynamic_names and dynamic_names.local; a missing ".local" file is
// skipped) in whitelist_clients syntax. Only name and /regex/ entries
// mean anything there: the signal is about the client's name, so an
// address entry is reported as a problem, as the whitelist reports
// entries that can never match.
func LoadDynamicNames(paths []string) (*whitelist.Clients, []whitelist.Problem) {
	c, probs := whitelist.LoadClients(paths)
	for _, path := range paths {
		probs = append(probs, addressEntries(path)...)
	}
	order := make(map[string]int, len(paths))
	for i, p := range paths {
		if _, ok := order[p]; !ok {
			order[p] = i
		}
	}
	slices.SortStableFunc(probs, func(a, b whitelist.Problem) int {
		if d := order[a.File] - order[b.File]; d != 0 {
			return d
		}
		return a.Line - b.Line
	})
	return c, probs
}

// addressEntries returns a problem for each line of path that the
// whitelist reads as an address or a network. Files that cannot be read
// are whitelist.LoadClients's to report.
func addressEntries(path string) []whitelist.Problem {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var probs []whitelist.Problem
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		entry, _, _ := strings.Cut(sc.Text(), "#")
		entry = strings.TrimSpace(entry)
		if entry == "" || strings.HasPrefix(entry, "/") || !looksLikeAddress(entry) {
			continue
		}
		probs = append(probs, whitelist.Problem{File: path, Line: line,
			Msg: "\"" + entry + "\": an address entry has no effect in dynamic_names, which matches client names; write a /regex/ or a domain"})
	}
	return probs
}

// looksLikeAddress reports whether a whitelist entry is an address or a
// network: IPv6 (two colons or more), or only digits, dots and a slash.
func looksLikeAddress(e string) bool {
	if strings.Count(e, ":") >= 2 {
		return true
	}
	return strings.Trim(e, "0123456789./") == ""
}
