// Package postgrey moves greylisting state between Postgrey and greyd: it
// reads BerkeleyDB's `db_dump` text of Postgrey's postgrey.db and
// postgrey_clients.db, decodes every key format Postgrey 1.35 to 1.37
// wrote, re-keys the entries to greyd's configured prefixes with the
// merge and expiry rules of greyd's store, translates Postgrey's command
// line into a greyd.hcl fragment, and writes `db_dump -p` text of greyd's
// state that `db_load` turns back into a database Postgrey accepts.
//
// It does no I/O beyond the readers and writers it is given: finding and
// running db_dump, and opening greyd's database, is internal/migrate's job.
package postgrey

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Record is one key/value pair of a dump.
type Record struct {
	// DB counts the databases of the stream from 0: `db_dump` of
	// postgrey.db and of postgrey_clients.db may be concatenated.
	DB         int
	Key, Value string
	Line       int // line of the key
}

// Problem is a malformed line, or a record that cannot be used, with the
// line it was found on.
type Problem struct {
	Line int
	Msg  string
	// Lost is set on the one problem of each key/value pair that was
	// dropped, so that callers can count the records lost.
	Lost bool
}

func (p Problem) Error() string { return fmt.Sprintf("line %d: %s", p.Line, p.Msg) }

// maxLine bounds one dump line. Postfix limits addresses to a few hundred
// bytes; a longer line is damage, not a key.
const maxLine = 64 << 10

// DumpReader reads the text `db_dump` writes, with -p (printable, the
// default for `greyd import-postgrey`) or without (hex bytes): header
// lines up to HEADER=END, then one line per key and per value, each with
// a leading space, up to DATA=END; then possibly another database.
// Malformed lines are skipped and reported by Problems, with the key or
// value they belong to, so that the pairing of keys and values stays
// right.
type DumpReader struct {
	s         *bufio.Scanner
	line      int
	inData    bool
	printable bool
	db        int
	problems  []Problem
	pending   *Record // a key whose value is next
	skipNext  bool    // the key line was bad: its value is dropped too
	err       error
}

// NewDumpReader returns a reader of r.
func NewDumpReader(r io.Reader) *DumpReader {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 4096), maxLine)
	return &DumpReader{s: s, db: -1}
}

// Problems returns the malformed lines seen so far.
func (d *DumpReader) Problems() []Problem { return d.problems }

func (d *DumpReader) problem(line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (d *DumpReader) lost(line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{Line: line, Msg: fmt.Sprintf(format, args...), Lost: true})
}

// Next returns the next record, or io.EOF at the end of the stream. Any
// other error is a read error of the underlying reader (or a line over
// 64 KiB), after which the stream cannot be resynchronised.
func (d *DumpReader) Next() (Record, error) {
	if d.err != nil {
		return Record{}, d.err
	}
	for d.s.Scan() {
		d.line++
		raw := bytes.TrimSuffix(d.s.Bytes(), []byte{'\r'})
		if !d.inData {
			d.header(raw)
			continue
		}
		if string(raw) == "DATA=END" {
			if d.pending != nil {
				d.lost(d.pending.Line, "key without a value before DATA=END")
				d.pending = nil
			}
			d.inData, d.skipNext = false, false
			continue
		}
		if len(raw) == 0 || raw[0] != ' ' {
			// A header line here means the previous database lost its
			// DATA=END (a truncated dump followed by another one).
			if bytes.HasPrefix(raw, []byte("VERSION=")) {
				d.problem(d.line, "new database without DATA=END before it")
				d.inData, d.pending, d.skipNext = false, nil, false
				d.header(raw)
				continue
			}
			d.bad(fmt.Sprintf("data line without its leading space: %q", clip(raw)))
			continue
		}
		v, err := d.decode(raw[1:])
		if err != nil {
			d.bad(err.Error())
			continue
		}
		if d.skipNext {
			d.skipNext = false
			continue
		}
		if d.pending == nil {
			d.pending = &Record{DB: d.db, Key: v, Line: d.line}
			continue
		}
		r := *d.pending
		r.Value = v
		d.pending = nil
		return r, nil
	}
	if err := d.s.Err(); err != nil {
		d.err = fmt.Errorf("line %d: %w", d.line+1, err)
		return Record{}, d.err
	}
	if d.inData {
		d.problem(d.line, "dump ends without DATA=END (truncated?)")
		d.inData = false
	}
	d.err = io.EOF
	return Record{}, io.EOF
}

// bad reports the current line and drops the key/value pair it is part
// of.
func (d *DumpReader) bad(msg string) {
	switch {
	case d.skipNext:
		d.problem(d.line, "%s", msg)
		d.skipNext = false // this was the bad pair's value slot
	case d.pending != nil:
		d.lost(d.line, "%s", msg)
		d.problem(d.pending.Line, "key dropped: its value on line %d is malformed", d.line)
		d.pending = nil
	default:
		d.lost(d.line, "%s", msg)
		d.skipNext = true
	}
}

// header handles one line before HEADER=END.
func (d *DumpReader) header(raw []byte) {
	line := string(raw)
	switch {
	case line == "HEADER=END":
		d.inData = true
		d.db++
	case strings.HasPrefix(line, "VERSION="):
		d.printable = false // db_dump's default is bytevalue until format= says otherwise
	case line == "format=print":
		d.printable = true
	case line == "format=bytevalue":
		d.printable = false
	case strings.HasPrefix(line, "type="):
		if t := line[len("type="):]; t != "btree" && t != "hash" {
			d.problem(d.line, "database type %q: Postgrey's databases are btree", t)
		}
	case strings.IndexByte(line, '=') > 0:
		// db_pagesize=, database=, subdatabase=, duplicates=…: nothing
		// that changes how keys and values read.
	case line == "":
	default:
		d.problem(d.line, "not a db_dump header line: %q", clip(raw))
	}
}

// decode undoes db_dump's escaping: in printable form '\\' is a backslash
// and '\xx' (two hex digits) any other byte; in bytevalue form the whole
// line is hex.
func (d *DumpReader) decode(s []byte) (string, error) {
	if !d.printable {
		if len(s)%2 != 0 {
			return "", fmt.Errorf("odd number of hex digits in %q", clip(s))
		}
		out := make([]byte, len(s)/2)
		for i := range out {
			hi, ok1 := unhex(s[2*i])
			lo, ok2 := unhex(s[2*i+1])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("not hex: %q", clip(s))
			}
			out[i] = hi<<4 | lo
		}
		return string(out), nil
	}
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s), nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			out = append(out, '\\')
			i++
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("incomplete escape at the end of %q", clip(s))
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("bad escape %q in %q", s[i:i+3], clip(s))
		}
		out = append(out, hi<<4|lo)
		i += 2
	}
	return string(out), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// clip shortens a line for a message.
func clip(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// Entry is one key and value to write with WriteDump.
type Entry struct{ Key, Value string }

// WriteDump writes entries as one btree database in `db_dump -p` format,
// which `db_load -f FILE postgrey.db` loads. Keys are written in the
// order given (sorted input loads fastest).
func WriteDump(w io.Writer, entries []Entry) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("VERSION=3\nformat=print\ntype=btree\nHEADER=END\n")
	var buf []byte
	for _, e := range entries {
		buf = appendPrintable(append(buf[:0], ' '), e.Key)
		buf = append(buf, '\n', ' ')
		buf = appendPrintable(buf, e.Value)
		buf = append(buf, '\n')
		bw.Write(buf)
	}
	bw.WriteString("DATA=END\n")
	return bw.Flush()
}

// appendPrintable escapes s as db_dump -p does: printable ASCII as is,
// a backslash doubled, every other byte as \xx.
func appendPrintable(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c >= 0x20 && c < 0x7f:
			dst = append(dst, c)
		default:
			dst = append(dst, '\\', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return dst
}
