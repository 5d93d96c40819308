package report

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkRead reads a day of a busy mail log: one line in ten a
// greylisting reject, one in ten greyd's decision, the rest other lines.
func BenchmarkRead(b *testing.B) {
	var log bytes.Buffer
	for i := 0; i < 10000; i++ {
		switch i % 10 {
		case 0:
			log.WriteString(reject("Dec  7 04:00:01", "mail.example.net", fmt.Sprintf("198.51.%d.%d", i/256%256, i%256), fmt.Sprintf("bounce-%d@lists.example.com", i), "bob@example.org") + "\n")
		case 1:
			fmt.Fprintf(&log, "Dec  7 04:00:01 mx1 greyd[77]: action=pass, reason=triplet found, client_name=mail.example.net, client_address=192.0.2.%d, sender=a@b.example, recipient=bob@example.org\n", i%256)
		default:
			fmt.Fprintf(&log, "Dec  7 04:00:01 mx1 postfix/smtpd[4242]: connect from mail.example.net[198.51.100.%d]\n", i%256)
		}
	}
	b.SetBytes(int64(log.Len()))
	b.ReportAllocs()
	for b.Loop() {
		l := NewLog(Parser{}, Filter{})
		if err := l.Read(bytes.NewReader(log.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
}
