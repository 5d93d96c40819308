package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"
)

// Client talks to the daemon's control socket; the greyd subcommands use
// it.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client of the control socket at path.
func NewClient(path string) *Client {
	d := net.Dialer{Timeout: 5 * time.Second}
	return &Client{Socket: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}}}
}

// UnreachableError says the daemon could not be reached: no socket, no
// daemon behind it, or no permission (greyd's CLI exits 3).
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	hint := "is greyd running? Its control socket is set by control { socket = ... }"
	switch {
	case errors.Is(e.Err, syscall.EACCES), errors.Is(e.Err, syscall.EPERM):
		hint = "run greyd's commands as root or as a member of group " + Group
		if uid, ok := ownerOnly(e.Socket); ok {
			hint = fmt.Sprintf("greyd could not give its control socket to group %s: only root and uid %d, which runs greyd, may use it", Group, uid)
		}
	case errors.Is(e.Err, syscall.ENOENT):
		hint = "is greyd running, with control { socket = ... } set to this path?"
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		hint = "a socket file without a daemon: greyd is not running (or crashed)"
	}
	return fmt.Sprintf("cannot reach greyd at %s: %v (%s)", e.Socket, rootCause(e.Err), hint)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// ownerOnly reports whether the socket at path admits its owner only
// (see Listen), and who that is.
func ownerOnly(path string) (uint32, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, fi.Mode().Perm()&0o077 == 0
}

// rootCause drops the layers of net.OpError that repeat the address:
// "no such file or directory" rather than "dial unix /run/...: connect:
// no such file or directory".
func rootCause(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// APIError is an error answer of the daemon.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Response, error) {
	u := "http://greyd" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &UnreachableError{Socket: c.Socket, Err: op}
		}
		return nil, fmt.Errorf("control socket %s: %w", c.Socket, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var ae apiError
		if json.Unmarshal(b, &ae) != nil || ae.Error == "" {
			ae.Error = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
		}
		return nil, &APIError{Status: resp.StatusCode, Message: ae.Error}
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, method, path string, q url.Values, body io.Reader, out any) error {
	resp, err := c.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control socket %s: reading the answer: %w", c.Socket, err)
	}
	return nil
}

// Explain asks how greyd would decide a request now.
func (c *Client) Explain(ctx context.Context, clientAddress, clientName, sender, recipient string) (*Explanation, error) {
	q := url.Values{"client_address": {clientAddress}, "client_name": {clientName}, "sender": {sender}, "recipient": {recipient}}
	var x Explanation
	return &x, c.getJSON(ctx, "GET", "/v1/explain", q, nil, &x)
}

// ExplainHELO is Explain with the client's HELO name, which selective
// greylisting's helo_invalid and the SPF of the null sender read (Explain
// takes the client name for it, or none for "unknown").
func (c *Client) ExplainHELO(ctx context.Context, clientAddress, clientName, helo, sender, recipient string) (*Explanation, error) {
	q := url.Values{"client_address": {clientAddress}, "client_name": {clientName}, "helo_name": {helo}, "sender": {sender}, "recipient": {recipient}}
	var x Explanation
	return &x, c.getJSON(ctx, "GET", "/v1/explain", q, nil, &x)
}

// Entries streams the entries matching q (kind, client, sender,
// recipient, state) to fn. warning is the daemon's note on what the
// filter could not match.
func (c *Client) Entries(ctx context.Context, q url.Values, fn func(Record) error) (warning string, err error) {
	resp, err := c.do(ctx, "GET", "/v1/entries", q, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	return resp.Header.Get("Greyd-Warning"), readRecords(resp.Body, fn)
}

// readRecords decodes an NDJSON stream; a final "error" record is an
// error.
func readRecords(r io.Reader, fn func(Record) error) error {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	for {
		var rec Record
		if err := dec.Decode(&rec); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading the listing: %w", err)
		}
		if rec.Kind == "error" {
			return fmt.Errorf("the daemon failed in the middle of the listing: %s", rec.Value)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// Delete deletes the entries matching q (client, sender, recipient; and
// dry_run).
func (c *Client) Delete(ctx context.Context, q url.Values) (*DeleteResult, error) {
	var res DeleteResult
	return &res, c.getJSON(ctx, "DELETE", "/v1/entries", q, nil, &res)
}

// Whitelist lists the runtime and the file whitelist entries.
func (c *Client) Whitelist(ctx context.Context) (*WhitelistList, error) {
	var out WhitelistList
	return &out, c.getJSON(ctx, "GET", "/v1/whitelist", nil, nil, &out)
}

// AddWhitelist adds a runtime whitelist entry.
func (c *Client) AddWhitelist(ctx context.Context, in WhitelistAdd) (*WhitelistAdded, error) {
	b, _ := json.Marshal(in)
	var out WhitelistAdded
	return &out, c.getJSON(ctx, "POST", "/v1/whitelist", nil, bytes.NewReader(b), &out)
}

// RemoveWhitelist removes a runtime whitelist entry.
func (c *Client) RemoveWhitelist(ctx context.Context, kind, value string) error {
	var out map[string]bool
	return c.getJSON(ctx, "DELETE", "/v1/whitelist", url.Values{"kind": {kind}, "value": {value}}, nil, &out)
}

// Stats returns the daemon's statistics.
func (c *Client) Stats(ctx context.Context) (*Stats, error) {
	var s Stats
	return &s, c.getJSON(ctx, "GET", "/v1/stats", nil, nil, &s)
}

// Export copies the daemon's whole state, as NDJSON, to w. It fails if
// the daemon reported an error at the end of the stream.
func (c *Client) Export(ctx context.Context, w io.Writer) error {
	resp, err := c.do(ctx, "GET", "/v1/export", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = copyLines(w, resp.Body)
	return err
}

// EntriesRaw is Entries copying the NDJSON lines to w as they come, for
// scripts: no decoding. It returns the number of lines.
func (c *Client) EntriesRaw(ctx context.Context, q url.Values, w io.Writer) (n int, warning string, err error) {
	resp, err := c.do(ctx, "GET", "/v1/entries", q, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	n, err = copyLines(w, resp.Body)
	return n, resp.Header.Get("Greyd-Warning"), err
}

// copyLines copies an NDJSON stream line by line, to catch the daemon's
// error line (a failure after the answer had started).
func copyLines(w io.Writer, r io.Reader) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if bytes.HasPrefix(line, []byte(`{"kind":"error"`)) {
				var rec Record
				json.Unmarshal(line, &rec)
				return n, fmt.Errorf("the daemon failed in the middle of the stream: %s", rec.Value)
			}
			if _, werr := w.Write(line); werr != nil {
				return n, werr
			}
			if line[len(line)-1] == '\n' {
				n++
			}
		}
		switch {
		case err == io.EOF:
			return n, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return n, fmt.Errorf("reading the stream: %w", err)
		}
	}
}

// Import sends NDJSON records (an export, or entries made by another
// tool) to the daemon.
func (c *Client) Import(ctx context.Context, r io.Reader) (*ImportResult, error) {
	var res ImportResult
	return &res, c.getJSON(ctx, "POST", "/v1/import", nil, r, &res)
}

// IsUnreachable reports whether err means the daemon could not be used at
// all: not reachable, or it refused this user.
func IsUnreachable(err error) bool {
	var ue *UnreachableError
	var ae *APIError
	return errors.As(err, &ue) || errors.As(err, &ae) && ae.Status == http.StatusForbidden
}
