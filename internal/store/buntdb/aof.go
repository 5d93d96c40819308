package buntdb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// buntdb's loader trusts its file more than greyd can afford to. Tried on
// v1.3.0 with one-record files:
//
//   - a length of 20 digits overflows its buffer-doubling loop: Open spins
//     at 100% CPU forever;
//   - a length of 1e12 makes it allocate a terabyte: fatal "out of memory";
//   - a command part shorter than 3 bytes: index-out-of-range panic;
//   - a non-numeric expiry: a *strconv.NumError, not ErrInvalid;
//   - NUL bytes before a record, and empty commands ("*0\r\n"), are
//     skipped but not counted, so writes resume that many bytes before the
//     real end of the file and overwrite the last record; the next Open
//     fails with ErrInvalid.
//
// checkAOF therefore walks the file first with buntdb's own grammar
// (RESP arrays of bulk strings: set/del/flushdb), with bounded lengths and
// no per-record allocation, and Open quarantines whatever it rejects.
// Whatever it accepts loads in buntdb (FuzzOpen checks that). It is
// stricter than buntdb on lengths that cannot fit the file, NUL bytes
// followed by more records, empty commands and absurdly long header lines
// or expiry numbers; it is more lenient on a torn record followed by a zeroed tail,
// which it truncates like any torn record where buntdb fails.

// errCorrupt marks a file that must be moved aside.
var errCorrupt = errors.New("invalid database")

// errTail means the file ended inside a record: a crash during a write.
var errTail = errors.New("file ends mid-record")

// aofHead keeps the length and first bytes of a command part: enough to
// check the command name, the expiry keyword and the expiry number.
type aofHead struct {
	n int64
	b [24]byte
}

func (h *aofHead) bytes() []byte { return h.b[:min(h.n, int64(len(h.b)))] }

// checkAOF returns the offset just past the last complete record of the
// buntdb file in ra, whose size is size. Anything beyond it is a torn
// write and/or NUL bytes (a file system's zeroed tail after a crash),
// which it is safe to truncate. The error wraps errCorrupt when the file
// is damaged before that point.
func checkAOF(ra io.ReaderAt, size int64) (good int64, err error) {
	// A record ends in CRLF, never in NUL: a NUL tail is not data, even
	// right after a torn record, where buntdb would misread it.
	end, err := trimNULs(ra, size)
	if err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(ra, 0, end), 64<<10)
	maxLen := max(size, 1<<20) // no complete record is longer than its file
	var (
		off   int64 // bytes consumed
		nul   bool  // NUL bytes since the last record
		parts [5]aofHead
		// Read through this, not into each aofHead: a slice of a local
		// passed to io.ReadFull escapes, one allocation per part.
		head = make([]byte, len(aofHead{}.b))
	)
	bad := func(at int64, why string) error {
		return fmt.Errorf("%w: %s at byte %d", errCorrupt, why, at)
	}
	for {
		c, err := r.ReadByte()
		if err == io.EOF {
			return good, nil
		} else if err != nil {
			return good, err
		}
		if c == 0 {
			off++
			nul = true
			continue
		}
		if nul {
			return good, bad(off, "NUL bytes before a record")
		}
		_ = r.UnreadByte()
		start := off

		count, n, err := readAOFHeader(r, '*', maxLen)
		off += n
		if err == errTail {
			return good, nil
		} else if err != nil {
			return good, bad(start, err.Error())
		}
		for i := int64(0); i < count; i++ {
			at := off
			l, n, err := readAOFHeader(r, '$', maxLen)
			off += n
			if err == errTail {
				return good, nil
			} else if err != nil {
				return good, bad(at, err.Error())
			}
			var h aofHead
			h.n = l
			keep := min(l, int64(len(h.b)))
			if _, err := io.ReadFull(r, head[:keep]); err != nil {
				return good, tailOr(err)
			}
			copy(h.b[:], head[:keep])
			if _, err := r.Discard(int(l - keep)); err != nil {
				return good, tailOr(err)
			}
			var crlf [2]byte
			if _, err := io.ReadFull(r, crlf[:]); err != nil {
				return good, tailOr(err)
			}
			off += l + 2
			if crlf != [2]byte{'\r', '\n'} {
				return good, bad(at, "bulk string not ended by CRLF")
			}
			if i < int64(len(parts)) {
				parts[i] = h
			}
		}
		if why := checkAOFCommand(count, &parts); why != "" {
			return good, bad(start, why)
		}
		good = off
	}
}

// trimNULs returns size less the NUL bytes at the end of ra.
func trimNULs(ra io.ReaderAt, size int64) (int64, error) {
	var buf [4096]byte
	for size > 0 {
		n := min(size, int64(len(buf)))
		if _, err := ra.ReadAt(buf[:n], size-n); err != nil && err != io.EOF {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				return size - n + i + 1, nil
			}
		}
		size -= n
	}
	return 0, nil
}

// tailOr maps a short read to nil (the caller keeps its good offset) and
// passes other read errors on.
func tailOr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil
	}
	return err
}

// readAOFHeader reads one "*<n>\r\n" or "$<n>\r\n" line.
func readAOFHeader(r *bufio.Reader, prefix byte, maxLen int64) (v, n int64, err error) {
	line, err := r.ReadSlice('\n')
	n = int64(len(line))
	switch {
	case err == io.EOF:
		return 0, n, errTail
	case err == bufio.ErrBufferFull:
		return 0, n, errors.New("overlong header line")
	case err != nil:
		return 0, n, err
	}
	if len(line) < 4 || line[0] != prefix || line[len(line)-2] != '\r' {
		return 0, n, fmt.Errorf("malformed %q header", prefix)
	}
	digits := line[1 : len(line)-2]
	if len(digits) > 12 {
		return 0, n, errors.New("length too large")
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, n, fmt.Errorf("malformed %q header", prefix)
		}
		v = v*10 + int64(c-'0')
	}
	if v > maxLen {
		return 0, n, errors.New("length larger than the file")
	}
	return v, n, nil
}

// checkAOFCommand mirrors the command checks of buntdb's readLoad and
// returns why a complete command would fail them (or panic), or "".
func checkAOFCommand(count int64, parts *[5]aofHead) string {
	if count == 0 {
		// buntdb skips it without counting its bytes: same misplaced
		// write position as with NUL bytes.
		return "empty command"
	}
	name := parts[0].bytes()
	if parts[0].n < 3 {
		return "short command name"
	}
	switch {
	case equalFoldASCII(name[:3], "set"):
		if count != 3 && count != 5 {
			return "set with wrong number of arguments"
		}
		if count == 5 {
			kw := parts[3].bytes()
			if parts[3].n != 2 || !(equalFoldASCII(kw, "ex") || equalFoldASCII(kw, "ae")) {
				return "set with unknown option"
			}
			if parts[4].n > int64(len(parts[4].b)) {
				return "set with malformed expiry"
			}
			if _, err := strconv.ParseInt(string(parts[4].bytes()), 10, 64); err != nil {
				return "set with malformed expiry"
			}
		}
	case equalFoldASCII(name[:3], "del"):
		if count != 2 {
			return "del with wrong number of arguments"
		}
	case parts[0].n == 7 && equalFoldASCII(name, "flushdb"):
	default:
		return "unknown command"
	}
	return ""
}

// equalFoldASCII reports whether b equals the lower-case ASCII string s,
// ignoring ASCII case.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
