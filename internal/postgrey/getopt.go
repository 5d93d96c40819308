package postgrey

import (
	"fmt"
	"regexp"
	"strings"
)

// Postgrey 1.37 reads its arguments with Getopt::Long configured
// "posix_default no_ignore_case" (postgrey L13, L500-509), and the
// translation must read them the same way:
//
//   - names are case-sensitive and never abbreviated ("--del" is
//     unknown);
//   - "--name=value", "--name value" and "-name value" give a value,
//     "-name=value" is an unknown option;
//   - the first argument that is not an option ("-" among them) ends the
//     options, and so does "--"; Postgrey never looks at the rest;
//   - an unknown option, a missing or empty value, or a number that is
//     not one makes Postgrey exit at once (GetOptions(...) or exit(1));
//   - a repeated option keeps its last value, except --whitelist-clients
//     and --whitelist-recipients, whose values add up.

// argKind is what an option takes, in Getopt::Long's terms.
type argKind int

const (
	argNone     argKind = iota // a switch
	argString                  // "=s"
	argInt                     // "=i"
	argOptional                // ":s", a value only if the next argument is not an option
	argList                    // "=s@", repeatable
)

type optSpec struct {
	name string // the option's first name: how notes and the translation call it
	kind argKind
}

// postgreyOptions maps every name and alias in Postgrey's GetOptions call
// to its option.
var postgreyOptions = func() map[string]optSpec {
	m := map[string]optSpec{}
	for _, o := range []struct {
		names string
		kind  argKind
	}{
		{"help|h", argNone}, {"man", argNone}, {"version", argNone}, {"noaction|no-action|n", argNone},
		{"verbose|v", argNone}, {"quiet|q", argNone}, {"daemonize|d", argNone},
		{"unix|u", argString}, {"inet|i", argString}, {"socketmode", argString},
		{"user", argString}, {"group", argString}, {"dbdir", argString}, {"pidfile", argString},
		{"delay", argInt}, {"max-age", argInt},
		{"lookup-by-subnet", argNone}, {"lookup-by-host", argNone},
		{"ipv4cidr", argInt}, {"ipv6cidr", argInt},
		{"auto-whitelist-clients", argOptional},
		{"whitelist-clients", argList}, {"whitelist-recipients", argList},
		{"syslog-facility|syslogfacility|facility", argString},
		{"retry-window", argString}, {"greylist-action", argString}, {"greylist-text", argString},
		{"privacy", argNone}, {"hostname", argString}, {"exim", argNone},
		{"listen-queue-size", argInt}, {"x-greylist-header", argString},
	} {
		names := strings.Split(o.names, "|")
		for _, n := range names {
			m[n] = optSpec{name: names[0], kind: o.kind}
		}
	}
	return m
}()

// perlInt is what Getopt::Long takes for "=i".
var perlInt = regexp.MustCompile(`^[-+]?[0-9]+$`)

// postgreyArgs is what Getopt::Long hands Postgrey, and what it said
// about the rest.
type postgreyArgs struct {
	opt   map[string]string   // each option given, by its first name: its last value ("1" for a switch)
	lists map[string][]string // the values of the "=s@" options, in order
	// as is how an option was last written, for the notes: "-v", or
	// "--name=value" for one with a value.
	as map[string]string
	// at is the index of the argument that first gave an option, so that
	// notes come in the order of the command line.
	at      map[string]int
	refused []argNote // what makes Postgrey refuse to start
	ignored []string  // the arguments after the options
	restAt  int
}

type argNote struct {
	at   int
	arg  string
	what string
}

func (p *postgreyArgs) has(name string) bool { _, ok := p.opt[name]; return ok }

// getopt reads args as Postgrey's GetOptions does.
func getopt(args []string) *postgreyArgs {
	p := &postgreyArgs{opt: map[string]string{}, lists: map[string][]string{}, as: map[string]string{}, at: map[string]int{}}
	refuse := func(i int, format string, a ...any) {
		p.refused = append(p.refused, argNote{at: i, arg: args[i], what: fmt.Sprintf(format, a...)})
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.ignored, p.restAt = args[i+1:], i+1
			break
		}
		var name, value string
		hasValue := false
		switch {
		case strings.HasPrefix(a, "--"):
			name, value, hasValue = strings.Cut(a[2:], "=")
		case strings.HasPrefix(a, "-") && a != "-":
			name = a[1:] // a single dash takes no "=value"
		default:
			p.ignored, p.restAt = args[i:], i
			return p
		}
		spec, ok := postgreyOptions[name]
		if !ok {
			refuse(i, "Unknown option: %s", name)
			continue
		}
		start := i
		switch spec.kind {
		case argNone:
			if hasValue {
				refuse(i, "Option %s does not take an argument", name)
				continue
			}
			value = "1"
		case argOptional:
			if !hasValue && i+1 < len(args) && args[i+1] != "--" && !(len(args[i+1]) > 1 && args[i+1][0] == '-') {
				i++
				value = args[i]
			}
		default:
			switch {
			case hasValue && value == "":
				refuse(i, "Option %s requires an argument", name)
				continue
			case !hasValue && i+1 >= len(args):
				refuse(i, "Option %s requires an argument", name)
				continue
			case !hasValue:
				i++
				value = args[i]
			}
			if spec.kind == argInt && !perlInt.MatchString(value) {
				refuse(start, "Value %q invalid for option %s (number expected)", value, name)
				continue
			}
		}
		if _, seen := p.at[spec.name]; !seen {
			p.at[spec.name] = start
		}
		p.opt[spec.name] = value
		if spec.kind == argList {
			p.lists[spec.name] = append(p.lists[spec.name], value)
		}
		if spec.kind == argNone {
			p.as[spec.name] = a
		} else {
			p.as[spec.name] = "--" + spec.name + "=" + value
		}
	}
	return p
}
