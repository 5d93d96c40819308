package identity

// dynamicToken reports whether host, the labels left of the organisation
// domain, names an access-network or customer host (rule 6): a keyword as
// a token, or a device identifier.
//
// The organisation's own label is not searched: there a word describes
// the company ("homedepot", "dynamicsignal"), not the host.
func dynamicToken(host string) bool {
	return hasKeyword(host, false) || hasDeviceID(host)
}

// hasKeyword reports whether a token of host is a dynamic keyword, or with
// weak also an address keyword. Tokens are the runs of letters: '.', '-'
// and digits separate them, so "dip0", "hsd1" and "ppp91" count.
func hasKeyword(host string, weak bool) bool {
	for i := 0; i < len(host); {
		if !isLetter(host[i]) {
			i++
			continue
		}
		j := i
		for j < len(host) && isLetter(host[j]) {
			j++
		}
		w := host[i:j]
		i = j
		if dynamicWord(w) || weak && addressWord(w) {
			return true
		}
	}
	return false
}

// dynamicWord reports whether w marks a host as one subscriber's line or
// one customer's machine. For every such host a subnet key costs nothing
// (a single host retries from its own address), while an organisation key
// would merge all customers of the ISP or hosting company into one sender.
//
// "static" is on the list for that reason: static lines are single hosts,
// residential or business, and the ISP's organisation is not theirs.
// Deliberately absent: words that name mail servers ("mail", "smtp",
// "mta", "out", "mx"), short ambiguous ones ("bb", "cm", "c", "p", "nat"),
// and "server", used by corporate pools as much as by rented machines.
func dynamicWord(w string) bool {
	switch w {
	case "dsl", "adsl", "vdsl", "xdsl", "sdsl", "hdsl",
		"dyn", "dynamic", "dynip", "dhcp",
		"dial", "dialup", "dialin",
		"ppp", "pppoe", "pppoa", "bras",
		"pool", "pools",
		"cable", "catv", "hsd", "docsis", "cpe", "modem",
		"client", "clients", "cust", "customer", "customers",
		"subscriber", "subscribers", "abo",
		"res", "resi", "resident", "residential", "home",
		"broadband", "dip", "fios", "ftth", "fttb", "fttc", "fttp", "fttx", "gpon",
		"user", "users",
		"wireless", "wifi", "wlan", "mobile", "lte", "gprs", "umts", "wimax",
		"static",
		"fbx", "ipngn", "ipoe", "cgnat",
		"vps", "vds", "cloudapp", "compute":
		return true
	}
	// Compounds: "dynamicip", "staticip", "clientes", "cablemodem".
	for _, p := range dynamicPrefixes {
		if len(w) > len(p) && w[:len(p)] == p {
			return true
		}
	}
	return false
}

var dynamicPrefixes = [...]string{
	"dynamic", "static", "dialup", "broadband", "customer", "client",
	"residential", "subscriber", "pppoe", "cable", "modem", "wireless",
	"adsl", "vdsl", "xdsl", "dhcp",
}

// addressWord reports whether w says "this name is made from an address";
// it counts only next to two octets of the client (rule 5), since on its
// own "host" or "ip" names servers too.
func addressWord(w string) bool {
	switch w {
	case "host", "hosts", "ip", "ips", "ipv", "addr", "rev", "reverse",
		"range", "ptr", "pub", "public", "nat", "generic", "unassigned":
		return true
	}
	return false
}

// hasDeviceID reports whether host has a run of 12 or more hex digits
// mixing letters and digits: a MAC address or modem serial, as in Shaw's
// "s0106aabbccddeeff" and Rogers' "cpe00fc8d1d2e3f". Mail providers number
// their hosts in decimal or with short hex suffixes.
func hasDeviceID(host string) bool {
	for i := 0; i < len(host); {
		if !isHex(host[i]) {
			i++
			continue
		}
		j, letters, digits := i, 0, 0
		for ; j < len(host) && isHex(host[j]); j++ {
			if isDigit(host[j]) {
				digits++
			} else {
				letters++
			}
		}
		if j-i >= 12 && letters > 0 && digits > 0 {
			return true
		}
		i = j
	}
	return false
}
