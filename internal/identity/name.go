package identity

import "strings"

// hostname returns name without one trailing dot and in lower case, and
// whether it is a hostname we may aggregate under: 1 to 253 characters,
// dot-separated labels of 1 to 63 letters, digits and inner hyphens, and a
// last label that is not all digits (so that an address literal is not a
// name). Postfix's "unknown" is not a name.
//
// This is stricter than Postfix's valid_hostname, which lets '_' through:
// anything odd stays on its subnet key, which is the safe direction.
// It allocates only when name has upper case.
func hostname(name string) (string, bool) {
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	if name == "" || len(name) > 253 || strings.EqualFold(name, "unknown") {
		return "", false
	}
	upper := false
	start, digitsOnly := 0, true
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if n := i - start; n == 0 || n > 63 || name[start] == '-' || name[i-1] == '-' {
				return "", false
			}
			if i == len(name) && digitsOnly {
				return "", false
			}
			start, digitsOnly = i+1, true
			continue
		}
		switch c := name[i]; {
		case 'a' <= c && c <= 'z' || c == '-':
			digitsOnly = false
		case 'A' <= c && c <= 'Z':
			digitsOnly, upper = false, true
		case '0' <= c && c <= '9':
		default:
			return "", false
		}
	}
	if upper {
		name = strings.ToLower(name)
	}
	return name, true
}
