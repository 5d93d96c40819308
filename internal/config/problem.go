package config

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// Problem is one configuration error, located at the offending value.
type Problem struct {
	File      string
	Line, Col int // 1-based; 0 when unknown
	Summary   string
	Detail    string

	subject *hcl.Range // for source snippets; nil when unknown
}

// Error returns "file:line:col: summary: detail", leaving out the parts
// that are unknown.
func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
			if p.Col > 0 {
				fmt.Fprintf(&b, ":%d", p.Col)
			}
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Summary)
	if p.Detail != "" {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	return b.String()
}

// Problems is every error found while loading a configuration.
type Problems []Problem

// Err returns nil when there are no problems, otherwise an error whose
// message lists them one per line.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Error lists the problems one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find an individual Problem.
func (ps Problems) Unwrap() []error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errs
}

// problemAt builds a Problem located at rng (which may be nil).
func problemAt(rng *hcl.Range, summary, detail string) Problem {
	p := Problem{Summary: summary, Detail: detail}
	if rng != nil {
		r := *rng
		p.File, p.Line, p.Col = r.Filename, r.Start.Line, r.Start.Column
		p.subject = &r
	}
	return p
}

// fromDiags converts HCL error diagnostics. Warnings are dropped: HCL's
// native syntax does not produce any for constant configs.
func fromDiags(diags hcl.Diagnostics) Problems {
	var ps Problems
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		ps = append(ps, problemAt(d.Subject, d.Summary, hclRangeRE.ReplaceAllString(d.Detail, ":$1:$2")))
	}
	return ps
}

// sortProblems orders problems by file (in reading order), line, column;
// gohcl reports attributes in map order, so this keeps output stable.
func sortProblems(ps Problems, files []string) {
	order := make(map[string]int, len(files))
	for i, f := range files {
		order[f] = i + 1
	}
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if order[a.File] != order[b.File] {
			return order[a.File] < order[b.File]
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// WriteProblems writes each problem in its one-line form and, when cfg
// still holds the source it was loaded from, the offending line with the
// value underlined:
//
//	/etc/greyd/greyd.hcl:7:3: Unsupported argument: An argument named "dealy" is not expected here. Did you mean "delay"?
//	    7 |   dealy = "5m"
//	      |   ^^^^^
//
// cfg may be nil.
func WriteProblems(w io.Writer, ps Problems, cfg *Config) error {
	var b bytes.Buffer
	for _, p := range ps {
		b.WriteString(p.Error())
		b.WriteByte('\n')
		if cfg != nil && p.subject != nil {
			writeSnippet(&b, cfg.sources[p.subject.Filename], *p.subject)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

func writeSnippet(b *bytes.Buffer, src []byte, r hcl.Range) {
	start, end := r.Start.Byte, r.End.Byte
	if src == nil || start < 0 || start > len(src) || end < start || r.Start.Line < 1 {
		return
	}
	lineStart := bytes.LastIndexByte(src[:start], '\n') + 1
	lineEnd := len(src)
	if i := bytes.IndexByte(src[start:], '\n'); i >= 0 {
		lineEnd = start + i
	}
	end = min(end, lineEnd)
	line := strings.TrimRight(string(src[lineStart:lineEnd]), "\r")
	if !utf8.ValidString(line) || strings.ContainsFunc(line, isControlNotTab) {
		return // do not echo garbage to a terminal
	}
	num := fmt.Sprint(r.Start.Line)
	pad := strings.Repeat(" ", len(num))
	fmt.Fprintf(b, "    %s | %s\n", num, line)
	// Keep tabs so the carets line up under the value.
	var caret strings.Builder
	for _, c := range string(src[lineStart:start]) {
		if c == '\t' {
			caret.WriteRune('\t')
		} else {
			caret.WriteByte(' ')
		}
	}
	caret.WriteString(strings.Repeat("^", max(1, utf8.RuneCount(src[start:end]))))
	fmt.Fprintf(b, "    %s | %s\n", pad, caret.String())
}

func isControlNotTab(r rune) bool {
	return r != '\t' && (r < 0x20 || r == 0x7f)
}
