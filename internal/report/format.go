package report

import (
	"bufio"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Format is postgreyreport's output options.
type Format struct {
	// SingleLine writes a line per triplet (--single_line, the default);
	// otherwise each client's name and address head the sender/recipient
	// pairs of its triplets (--nosingle_line).
	SingleLine bool
	// Tab separates the columns of single lines with tabs (--tab).
	Tab bool
	// ShowTries adds the number of greylisted attempts (--show_tries);
	// ShowTime the timestamp of the last one (--show_time; single lines).
	ShowTries, ShowTime bool
	// SeparateBySubnet is written before each new network (--
	// separate_by_subnet), SeparateByIP before each new client address
	// (--separate_by_ip); "\n" in them is a newline.
	SeparateBySubnet, SeparateByIP string
	// V4Prefix and V6Prefix make a "subnet": 24 and 64 when 0.
	V4Prefix, V6Prefix int
}

// Write writes the triplets ts, in their order, as postgreyreport does.
func (f *Format) Write(w io.Writer, ts []*Triplet) error {
	bw := bufio.NewWriter(w)
	sepNet := strings.ReplaceAll(f.SeparateBySubnet, `\n`, "\n")
	sepIP := strings.ReplaceAll(f.SeparateByIP, `\n`, "\n")
	var lastIP netip.Addr
	var lastNet netip.Prefix
	for i, t := range ts {
		net := f.subnet(t.Addr)
		newIP := i == 0 || t.Addr != lastIP
		switch {
		case i > 0 && net == lastNet:
			if newIP && sepIP != "" {
				bw.WriteString(sepIP)
			}
		case sepNet != "":
			bw.WriteString(sepNet)
		case sepIP != "":
			bw.WriteString(sepIP)
		}
		ip, name := clean(t.Addr.String()), clean(orUnknown(t.Name))
		sender, rcpt := clean(orNull(t.Sender)), clean(t.Recipient)
		tries := strconv.Itoa(t.Tries())
		switch {
		case f.SingleLine && f.Tab:
			if f.ShowTime {
				bw.WriteString(clean(orDash(t.Time)) + "\t")
			}
			if f.ShowTries {
				bw.WriteString(tries + "\t")
			}
			bw.WriteString(ip + "\t" + name + "\t" + sender + "\t" + rcpt + "\n")
		case f.SingleLine:
			if f.ShowTime {
				bw.WriteString(clean(orDash(t.Time)) + " ")
			}
			if f.ShowTries {
				bw.WriteString(tries + " ")
			}
			bw.WriteString(padLeft(ip, 15) + " " + name + " " + sender + " " + rcpt + "\n")
		default:
			if newIP {
				bw.WriteString(padRight(name, 77) + " " + padLeft(ip, 15) + "\n")
			}
			bw.WriteString("      ")
			if f.ShowTries {
				bw.WriteString(" " + padLeft(tries, 2) + " ")
			} else {
				bw.WriteString("    ")
			}
			bw.WriteString(" " + padLeft(sender, 40) + "  " + padLeft(rcpt, 40) + " \n")
		}
		lastIP, lastNet = t.Addr, net
	}
	return bw.Flush()
}

// subnet is the network of addr that -separate-by-subnet goes by.
func (f *Format) subnet(addr netip.Addr) netip.Prefix {
	bits := f.V6Prefix
	if bits == 0 {
		bits = 64
	}
	if addr.Is4() {
		bits = f.V4Prefix
		if bits == 0 {
			bits = 24
		}
	}
	p, _ := addr.Prefix(bits)
	return p
}

func orUnknown(name string) string {
	if name == "" {
		return "unknown"
	}
	return name
}

func orNull(sender string) string {
	if sender == "" {
		return "<>"
	}
	return sender
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clean replaces control characters (tabs included: they would split a
// column) and bytes that are not UTF-8 with '?': a log holds what SMTP
// clients sent, and the report goes to a terminal.
func clean(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f || c >= utf8.RuneSelf {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1, r < ' ', r == 0x7f, 0x80 <= r && r < 0xa0:
			b.WriteByte('?')
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// padLeft and padRight pad to n bytes, as Perl's printf does with
// strings it reads from a file.
func padLeft(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return strings.Repeat(" ", n-len(s)) + s
}

func padRight(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat(" ", n-len(s))
}
