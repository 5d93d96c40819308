package reload

import (
	"fmt"
	"strconv"
	"strings"

	"greyd/internal/config"
)

// A restartOnly setting is read once, at start: the sockets, the database
// and the privacy key that goes with it. A reload keeps its running value
// and says so, so that an edit meant for the next restart neither takes
// effect half-way nor goes unnoticed.
type restartOnly struct {
	name string // as written in the configuration: "database.path"
	// origin is the setting whose position the warning names when name
	// is a block ("metrics"); "" means name.
	origin string
	value  func(*config.Config) string // as the warning shows it
}

// keepRunning gives next the running values of every restart-only setting
// and returns a warning for each one that next changed.
func keepRunning(running, next *config.Config) []string {
	var warnings []string
	for _, s := range restartOnlySettings(running, next) {
		was := s.value(running)
		if was == s.value(next) {
			continue
		}
		origin := s.origin
		if origin == "" {
			origin = s.name
		}
		where := next.Origin(origin)
		if where == "" { // removed: back to the default
			where = "the configuration"
		}
		warnings = append(warnings, fmt.Sprintf("%s changed in %s: restart greyd to apply it (running with %s)", s.name, where, orNone(was)))
	}
	next.Listen = running.Listen
	next.Database = running.Database
	next.Control = running.Control
	next.Metrics = running.Metrics
	next.Greylist.Privacy = running.Greylist.Privacy
	next.DNS.Servers = running.DNS.Servers
	return warnings
}

// restartOnlySettings lists the settings keepRunning compares, as finely
// as a and b allow: listen blocks one by one when both have as many.
func restartOnlySettings(a, b *config.Config) []restartOnly {
	var s []restartOnly
	if len(a.Listen) != len(b.Listen) {
		s = append(s, restartOnly{name: "listen", value: func(c *config.Config) string {
			var ls []string
			for _, l := range c.Listen {
				ls = append(ls, describeListen(l))
			}
			return strings.Join(ls, "; ")
		}})
	} else {
		for i := range a.Listen {
			p := fmt.Sprintf("listen.%d.", i)
			s = append(s,
				restartOnly{name: p + "unix", value: func(c *config.Config) string { return c.Listen[i].Unix }},
				restartOnly{name: p + "inet", value: func(c *config.Config) string { return c.Listen[i].Inet }},
				restartOnly{name: p + "allow", value: func(c *config.Config) string { return prefixes(c.Listen[i]) }},
				restartOnly{name: p + "socket_mode", value: func(c *config.Config) string { return fmt.Sprintf("%#o", c.Listen[i].SocketMode) }},
				restartOnly{name: p + "socket_group", value: func(c *config.Config) string { return c.Listen[i].SocketGroup }},
				restartOnly{name: p + "exim", value: func(c *config.Config) string { return strconv.FormatBool(c.Listen[i].Exim) }},
			)
		}
	}
	s = append(s,
		restartOnly{name: "database.path", value: func(c *config.Config) string { return c.Database.Path }},
		restartOnly{name: "database.sync", value: func(c *config.Config) string { return c.Database.Sync }},
	)
	if ra, rb := a.Database.Redis, b.Database.Redis; ra == nil || rb == nil {
		s = append(s, restartOnly{name: "database.redis", origin: "database.redis.url", value: func(c *config.Config) string {
			if c.Database.Redis == nil {
				return "no redis block"
			}
			return c.Database.Redis.URL
		}})
	} else {
		s = append(s,
			restartOnly{name: "database.redis.url", value: func(c *config.Config) string { return c.Database.Redis.URL }},
			restartOnly{name: "database.redis.password_file", value: func(c *config.Config) string { return c.Database.Redis.PasswordFile }},
			restartOnly{name: "database.redis.key_prefix", value: func(c *config.Config) string { return strconv.Quote(c.Database.Redis.KeyPrefix) }},
		)
	}
	// The key lives next to the running database; another one would
	// greylist every known sender again.
	s = append(s,
		restartOnly{name: "greylist.privacy", value: func(c *config.Config) string { return strconv.FormatBool(c.Greylist.Privacy) }},
		restartOnly{name: "control.socket", value: func(c *config.Config) string { return c.Control.Socket }},
		// One resolver per daemon: its cache outlives reloads.
		restartOnly{name: "dns.servers", value: func(c *config.Config) string { return strings.Join(c.DNS.Servers, ", ") }},
	)
	if a.Metrics == nil || b.Metrics == nil {
		s = append(s, restartOnly{name: "metrics", origin: "metrics.listen", value: func(c *config.Config) string {
			if c.Metrics == nil {
				return "no metrics block"
			}
			return "metrics on " + c.Metrics.Listen
		}})
	} else {
		s = append(s, restartOnly{name: "metrics.listen", value: func(c *config.Config) string { return c.Metrics.Listen }})
	}
	return s
}

func describeListen(l config.Listen) string {
	s := "inet " + l.Inet + " allow " + prefixes(l)
	if l.Unix != "" {
		s = "unix " + l.Unix
	}
	if l.Exim {
		s += " exim"
	}
	return s
}

func prefixes(l config.Listen) string {
	ps := make([]string, len(l.Allow))
	for i, p := range l.Allow {
		ps[i] = p.String()
	}
	return strings.Join(ps, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
