package signals

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const shippedDynamicNames = "../../etc/greyd/dynamic_names"

// The shipped file against the names that providers give their
// subscribers, and against the outbound hosts of mail providers.
func TestShippedDynamicNames(t *testing.T) {
	names, probs := LoadDynamicNames([]string{shippedDynamicNames, shippedDynamicNames + ".local"})
	if len(probs) != 0 {
		t.Fatalf("problems in the shipped file: %v", probs)
	}
	if names.Len() == 0 {
		t.Fatal("the shipped file has no entries")
	}
	tests := []struct {
		name    string
		dynamic bool
	}{
		// Subscriber lines, cloud machines.
		{"dsl-187-156-12-3.prod-infinitum.com.mx", true},                  // Telmex
		{"c-73-22-11-5.hsd1.ca.comcast.net", true},                        // Comcast
		{"pool-100-2-3-4.nycmny.fios.verizon.net", true},                  // Verizon
		{"adsl-99-12-34-56.dsl.lsan03.sbcglobal.net", true},               // AT&T
		{"99-12-34-56.lightspeed.sntcca.sbcglobal.net", true},             // AT&T
		{"cpe-24-90-12-34.nyc.res.rr.com", true},                          // Spectrum
		{"syn-024-090-012-034.res.spectrum.com", true},                    // Spectrum
		{"ip68-100-12-34.ph.ph.cox.net", true},                            // Cox
		{"75-166-12-34.hlrn.qwest.net", true},                             // CenturyLink
		{"mobile-166-170-12-34.mycingular.net", true},                     // AT&T mobile
		{"p5b0a1c2d.dip0.t-ipconnect.de", true},                           // Deutsche Telekom
		{"p200300e1a7123400b1c2d3e4f5a6b7c8.dip0.t-ipconnect.de", true},   // Deutsche Telekom, IPv6
		{"dslb-088-070-012-034.088.070.pools.vodafone-ip.de", true},       // Vodafone
		{"x4d0c1234.dyn.telefonica.de", true},                             // O2
		{"i59f7a1b2.versanet.de", true},                                   // 1&1 Versatel
		{"host86-123-45-6.range86-123.btcentralplus.com", true},           // BT
		{"5e0c1234.bb.sky.com", true},                                     // Sky
		{"cpc123456-bagu17-2-0-cust123.1-3.cable.virginm.net", true},      // Virgin Media
		{"host-78-147-12-34.as13285.net", true},                           // TalkTalk
		{"lfbn-idf3-1-123-56.w86-245.abo.wanadoo.fr", true},               // Orange
		{"mar75-1-82-123-45-67.fbx.proxad.net", true},                     // Free
		{"12.34.56.78.rev.sfr.net", true},                                 // SFR
		{"81.red-83-45-67.dynamicip.rima-tde.net", true},                  // Telefónica Spain
		{"host34-12-dynamic.56-79-r.retail.telecomitalia.it", true},       // TIM
		{"93-41-12-34.ip82.fastwebnet.it", true},                          // Fastweb
		{"ppp-94-64-12-3.home.otenet.gr", true},                           // OTE
		{"201-13-45-67.dsl.telesp.net.br", true},                          // Vivo
		{"187-45-12-34.user.veloxzone.com.br", true},                      // Oi
		{"bzq-79-176-12-34.red.bezeqint.net", true},                       // Bezeq
		{"95-24-12-34.broadband.corbina.ru", true},                        // Beeline
		{"ppp91-76-12-34.pppoe.mtu-net.ru", true},                         // MTU
		{"89.67.45.123.broad.xw.sh.dynamic.163data.com.cn", true},         // China Telecom
		{"36-228-12-34.dynamic-ip.hinet.net", true},                       // HiNet
		{"KD106128147108.au-net.ne.jp", true},                             // KDDI
		{"softbank126012034056.bbtec.net", true},                          // SoftBank
		{"p1234567-ipngn1234funabasi.chiba.ocn.ne.jp", true},              // NTT OCN
		{"s0106aabbccddeeff.vc.shawcable.net", true},                      // Shaw
		{"modemcable034.12-56-74.mc.videotron.ca", true},                  // Vidéotron
		{"cpe00fc8d1d2e3f-cm00fc8d1d2e3d.cpe.net.cable.rogers.com", true}, // Rogers
		{"cpe-1-120-12-34.bpw7-r-031.woo.qld.bigpond.net.au", true},       // Telstra
		{"14-200-12-34.tpgi.com.au", true},                                // TPG
		{"84-25-12-34.cable.dynamic.v4.ziggo.nl", true},                   // Ziggo
		{"dhcp-077-248-012-034.chello.nl", true},                          // UPC
		{"h81-12-34-56.cust.a3fiber.se", true},                            // Telia
		{"tmo-096-12.customers.d1-online.com", true},                      // T-Mobile
		{"abts-kk-dynamic-012.34.56.78.airtelbroadband.in", true},         // Airtel
		{"ec2-54-1-2-3.compute-1.amazonaws.com", true},                    // EC2
		{"3.2.1.34.bc.googleusercontent.com", true},                       // Google Cloud
		{"static.88-198-12-34.clients.your-server.de", true},              // Hetzner default name
		{"out203-205-221-190.mail.qq.com", true},                          // a mail pool named by address: a known false positive
		{"66-220-155-142.mail-mail.facebook.com", true},                   // likewise; whitelisted in whitelist_clients
		{"C-73-22-11-5.HSD1.CA.COMCAST.NET.", true},                       // case and the trailing dot do not matter

		// Outbound hosts of mail providers, and names that merely contain a keyword.
		{"mail-ej1-f41.google.com", false},
		{"mail-pl1-f173.google.com", false},
		{"mail-yw1-x1130.google.com", false},
		{"mail-sor-f41.google.com", false},
		{"mail-dm6nam10on2057.outbound.protection.outlook.com", false},
		{"mail-oln040092255081.outbound.protection.outlook.com", false},
		{"mail-am6eur05on2050.outbound.protection.outlook.com", false},
		{"a9-92.smtp-out.amazonses.com", false},
		{"a27-12.smtp-out.us-west-2.amazonses.com", false},
		{"sonic317-27.consmr.mail.bf2.yahoo.com", false},
		{"nm12-vm3.bullet.mail.ir2.yahoo.com", false},
		{"pv50p00im-ztdg10021101.me.com", false},
		{"st43p00im-zteg10063501.me.com", false},
		{"mail112.suw15.mcsv.net", false},
		{"mail135.atl121.mcsv.net", false},
		{"so254-9.mailgun.net", false},
		{"m228-12.mailgun.net", false},
		{"smtp.mailgun.org", false},
		{"o1.email.sendgrid.net", false},
		{"mta-203-32-122.sparkpostmail.com", false},
		{"mout.gmx.net", false},
		{"mout-p-101.mailbox.org", false},
		{"mo4-p00-ob.smtp.rzone.de", false},
		{"out1-smtp.messagingengine.com", false},
		{"wout3-smtp.messagingengine.com", false},
		{"mail.protonmail.ch", false},
		{"smtp05-ia4-sp3.mta.salesforce.com", false},
		{"sender4-of-o51.zoho.com", false},
		{"relay.mailchannels.net", false},
		{"ppsw-21.csi.cam.ac.uk", false},
		{"mx1.example.org", false},
		{"mx2.freebsd.org", false},
		{"smtp.kernel.org", false},
		{"mail.dsl-consulting.de", false},
		{"mx1.dynamic-solutions.com", false},
		{"mail1.home.pl", false},
		{"smtp2.pool-corp.com", false},
		{"mx2.homedepot.com", false},
		{"host2.example.com", false},
		{"mail.static-site.example", false},
	}
	dyn, clean := 0, 0
	for _, tc := range tests {
		if got := names.MatchName(tc.name); got != tc.dynamic {
			t.Errorf("MatchName(%q) = %v, want %v", tc.name, got, tc.dynamic)
		}
		if tc.dynamic {
			dyn++
		} else {
			clean++
		}
	}
	if dyn < 20 || clean < 20 {
		t.Errorf("%d dynamic and %d clean names, want at least 20 of each", dyn, clean)
	}
}

func TestLoadDynamicNames(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "dynamic_names")
	local := filepath.Join(dir, "dynamic_names.local")
	write := func(path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(main, "# ours\n/^dyn-[0-9]/\n192.0.2.0/24 # an address\nbad entry\n")
	write(local, "pool.example.net\n2001:db8::/32\n/(/\n")
	names, probs := LoadDynamicNames([]string{main, local})
	var got []string
	for _, p := range probs {
		got = append(got, p.Error())
	}
	want := []string{
		main + `:3: "192.0.2.0/24": an address entry has no effect in dynamic_names, which matches client names; write a /regex/ or a domain`,
		main + `:4: "bad entry": doesn't look like a hostname (contains whitespace; write one entry per line, and \s for white space in a regex)`,
		local + `:2: "2001:db8::/32": an address entry has no effect in dynamic_names, which matches client names; write a /regex/ or a domain`,
		local + ":3: \"/(/\": bad regex: missing closing ): `(`",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for name, want := range map[string]bool{
		"dyn-12.example.com":   true,
		"a.pool.example.net":   true,
		"mx.example.net":       false,
		"dyn.example.com":      false,
		"unknown":              false,
		"pool.example.net.org": false,
	} {
		if got := names.MatchName(name); got != want {
			t.Errorf("MatchName(%q) = %v, want %v", name, got, want)
		}
	}
	// A missing .local is normal; a missing main file is a problem.
	if _, probs := LoadDynamicNames([]string{main + ".nope.local"}); len(probs) != 0 {
		t.Errorf("missing .local: got %v, want no problem", probs)
	}
	if _, probs := LoadDynamicNames([]string{main + ".nope"}); len(probs) != 1 {
		t.Errorf("missing file: got %v, want one problem", probs)
	}
}
