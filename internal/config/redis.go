package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Redis selects the Redis backend (Redis, Valkey, KeyDB): one server, a
// Sentinel-managed master, or a Cluster. It is decoded from url:
//
//	redis://host:port/db           one server (port 6379, db 0 when left out)
//	rediss://host:port/db          the same over TLS
//	unix:///path/to/redis.sock?db=N   one server on a unix socket
//	redis://s1:26379/0?master_set=mymaster&addr=s2:26379&addr=s3:26379
//	                               Sentinel: Addrs are every sentinel (port 26379 when left out)
//	redis://n1:7000?addr=n2:7000&addr=n3:7000
//	                               Cluster: Addrs are every node (db 0 only)
//
// A username may be given (redis://user@host, for Redis ACLs); a password
// never: it belongs in PasswordFile, not in a configuration file that
// check-config prints and the package makes world-readable.
type Redis struct {
	URL          string   // as written
	PasswordFile string   // absolute; "" = no password
	KeyPrefix    string   // put before every key, so several sites can share one Redis
	Network      string   // "tcp" or "unix"
	Addrs        []string // host:port of the server, every sentinel or every node; the socket path for unix
	DB           int      // database number
	TLS          bool     // rediss
	MasterSet    string   // Sentinel's name of the master when != ""
	Username     string   // ACL user from the URL's userinfo; "" = the default user
}

// DefaultRedisKeyPrefix is the key_prefix of a redis block without one.
const DefaultRedisKeyPrefix = "greyd:"

// Default ports of a Redis URL without one.
const (
	redisPort    = "6379"
	sentinelPort = "26379"
)

// redisOptions are the query options of a TCP URL, for error messages.
var redisOptions = []string{"addr", "master_set"}

// parseRedisURL fills the connection fields of r from s. Errors say what
// to write instead.
func parseRedisURL(s string) (Redis, error) {
	r := Redis{URL: s}
	u, err := url.Parse(s)
	if err != nil {
		return r, fmt.Errorf("%q is not a URL (%v); want redis://host:port/db, rediss://host:port/db or unix:///path/to/redis.sock", s, unwrapURLError(err))
	}
	if u.Fragment != "" || strings.HasSuffix(s, "#") {
		return r, fmt.Errorf("%q: remove the #fragment", s)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return r, fmt.Errorf("%q has a password: remove it from the URL and put it into a file named by password_file (readable by greyd only)", redactURL(u))
		}
		r.Username = u.User.Username()
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return r, fmt.Errorf("%q: bad query string: %v", s, err)
	}
	switch u.Scheme {
	case "redis", "rediss":
		err = r.parseTCP(u, q)
	case "unix":
		err = r.parseUnix(u, q)
	case "":
		err = fmt.Errorf("%q has no scheme; want redis://host:port/db, rediss://host:port/db or unix:///path/to/redis.sock", s)
	default:
		err = fmt.Errorf("%q: unknown scheme %q; want redis, rediss (TLS) or unix", s, u.Scheme)
	}
	return r, err
}

func (r *Redis) parseTCP(u *url.URL, q url.Values) error {
	r.Network, r.TLS = "tcp", u.Scheme == "rediss"
	for _, name := range slices.Sorted(maps.Keys(q)) {
		vals := q[name]
		switch name {
		case "addr":
		case "master_set":
			if len(vals) > 1 {
				return fmt.Errorf("%q: master_set is given %d times; a Sentinel URL names one master", r.URL, len(vals))
			}
			if vals[0] == "" {
				return fmt.Errorf("%q: master_set is empty; name the master as the sentinels know it, like master_set=mymaster", r.URL)
			}
			r.MasterSet = vals[0]
		case "db":
			return fmt.Errorf("%q: put the database number into the path, like redis://host:port/0, not into ?db=", r.URL)
		default:
			return fmt.Errorf("%q: unknown option %q; the options are %s", r.URL, name, strings.Join(redisOptions, " and "))
		}
	}
	defPort := redisPort
	if r.MasterSet != "" {
		defPort = sentinelPort
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host; want redis://host:port/db, like redis://127.0.0.1:6379/0", r.URL)
	}
	first, err := hostPort(u.Host, defPort)
	if err != nil {
		return fmt.Errorf("%q: %v", r.URL, err)
	}
	r.Addrs = []string{first}
	for _, a := range q["addr"] {
		hp, err := hostPort(a, defPort)
		if err != nil {
			return fmt.Errorf("%q: addr=%s: %v", r.URL, a, err)
		}
		if slices.Contains(r.Addrs, hp) {
			return fmt.Errorf("%q: %s is listed twice", r.URL, hp)
		}
		r.Addrs = append(r.Addrs, hp)
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 || !isDigits(db) {
			return fmt.Errorf("%q: the path must be a database number (0 or more), like /0; got %q", r.URL, u.Path)
		}
		r.DB = n
	}
	if r.MasterSet == "" && len(r.Addrs) > 1 && r.DB != 0 {
		return fmt.Errorf("%q: a Redis Cluster (several addresses without master_set) has only database 0", r.URL)
	}
	return nil
}

func (r *Redis) parseUnix(u *url.URL, q url.Values) error {
	r.Network = "unix"
	if u.Host != "" {
		return fmt.Errorf("%q: want unix:///path/to/redis.sock, with three slashes and an absolute path", r.URL)
	}
	if u.Path == "" || u.Path == "/" {
		return fmt.Errorf("%q has no socket path; want unix:///path/to/redis.sock", r.URL)
	}
	if len(u.Path) > maxUnixPath {
		return fmt.Errorf("%q: the socket path is %d bytes long, but a unix socket path can have at most %d", r.URL, len(u.Path), maxUnixPath)
	}
	r.Addrs = []string{filepath.Clean(u.Path)}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		vals := q[name]
		if name != "db" {
			return fmt.Errorf("%q: unknown option %q; a unix URL has only db, like unix:///run/redis/redis.sock?db=0", r.URL, name)
		}
		if len(vals) > 1 {
			return fmt.Errorf("%q: db is given %d times", r.URL, len(vals))
		}
		n, err := strconv.Atoi(vals[0])
		if err != nil || n < 0 || !isDigits(vals[0]) {
			return fmt.Errorf("%q: db must be a database number (0 or more), got %q", r.URL, vals[0])
		}
		r.DB = n
	}
	return nil
}

// hostPort checks "host", "host:port", "[v6]" or "[v6]:port" and returns
// it as host:port.
func hostPort(s, defPort string) (string, error) {
	host, port := s, defPort
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	} else if strings.Contains(s, ":") {
		return "", fmt.Errorf("invalid host %q; want host:port, with IPv6 addresses in brackets, like [::1]:6379", s)
	}
	if host == "" || strings.ContainsFunc(host, isSpaceOrControl) || strings.ContainsAny(host, "/[]@?#") ||
		strings.Contains(host, ":") && net.ParseIP(host) == nil {
		return "", fmt.Errorf("invalid host %q; want host:port, like 127.0.0.1:6379 or [::1]:6379", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || !isDigits(port) {
		return "", fmt.Errorf("the port of %q must be a number from 1 to 65535", s)
	}
	return net.JoinHostPort(host, port), nil
}

// unwrapURLError drops the "parse "...": " prefix of url.Parse errors; the
// message already quotes the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// redactURL is u without its password, to quote it in an error message
// that ends up in logs.
func redactURL(u *url.URL) string {
	c := *u
	c.User = url.UserPassword(u.User.Username(), "xxxxx")
	return c.String()
}

// CheckPasswordFile returns a warning when users other than the owner and
// the group may read (or write) the password file, and "" otherwise, also
// when there is no password file or it cannot be examined (Load reports
// that as a problem). Load calls it; the daemon may call it again before
// connecting.
func (r *Redis) CheckPasswordFile() (warning string) {
	if r == nil || r.PasswordFile == "" {
		return ""
	}
	fi, err := os.Stat(r.PasswordFile)
	if err != nil || fi.Mode().Perm()&0o007 == 0 {
		return ""
	}
	return fmt.Sprintf("%s has mode %04o: other users can read the Redis password; chmod o-rwx %s (and let only greyd's group read it, e.g. root:greyd 0640)",
		r.PasswordFile, uint32(fi.Mode().Perm()), r.PasswordFile)
}
