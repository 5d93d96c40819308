package identity

import (
	"net/netip"
	"strings"
	"testing"
)

// check runs m.Of and compares with the expected key and rule; want == ""
// means "keyed by subnet".
func check(t *testing.T, m *Matcher, i int, addr, name, want string, rule Rule) {
	t.Helper()
	var ip netip.Addr
	if addr != "" {
		ip = netip.MustParseAddr(addr)
	}
	org, r, ok := m.Of(ip, name)
	if org != want || r != rule || ok != (want != "") {
		t.Errorf("%d: Of(%s, %q) = (%q, %v, %v), want (%q, %v, %v)",
			i, addr, name, org, r, ok, want, rule, want != "")
	}
}

// TestOf covers the rules without configured lists: names as the
// providers publish them and as access networks name their subscribers.
func TestOf(t *testing.T) {
	const sub = "" // keyed by subnet
	tests := []struct {
		addr, name string
		want       string
		rule       Rule
	}{
		// The examples of issue 12.
		{"40.107.93.57", "mail-dm6nam10on2057.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		{"209.85.214.173", "mail-pl1-f173.google.com", "google.com", OrgDomain},
		{"2607:f8b0:4864:20::62a", "mail-pl1-x62a.google.com", "google.com", OrgDomain},
		{"54.240.9.92", "a9-92.smtp-out.amazonses.com", "amazonses.com", OrgDomain},
		{"66.163.191.153", "sonic317-27.consmr.mail.bf2.yahoo.com", "yahoo.com", OrgDomain},
		{"17.58.6.45", "pv50p00im-ztdg10021101.me.com", "me.com", OrgDomain},
		{"205.201.131.112", "mail112.suw15.mcsv.net", "mcsv.net", OrgDomain},
		{"73.15.220.11", "c-73-15-220-11.hsd1.ca.comcast.net", sub, AddressInName},
		{"100.2.3.4", "pool-100-2-3-4.nycmny.fios.verizon.net", sub, AddressInName},
		{"91.10.18.52", "p5b0a1234.dip0.t-ipconnect.de", sub, AddressInName},
		{"54.1.2.3", "ec2-54-1-2-3.compute-1.amazonaws.com", sub, NoOrgDomain},

		// Google.
		{"209.85.218.41", "mail-ej1-f41.google.com", "google.com", OrgDomain},
		{"209.85.208.54", "mail-ed1-f54.google.com", "google.com", OrgDomain},
		{"209.85.167.51", "mail-lf1-f51.google.com", "google.com", OrgDomain},
		{"209.85.219.170", "mail-yb1-f170.google.com", "google.com", OrgDomain},
		{"209.85.222.198", "mail-qk1-f198.google.com", "google.com", OrgDomain},
		{"209.85.220.41", "mail-sor-f41.google.com", "google.com", OrgDomain},
		{"209.85.128.47", "mail-wm1-f47.google.com", "google.com", OrgDomain},
		{"2a00:1450:4864:20::52e", "mail-ed1-x52e.google.com", "google.com", OrgDomain},
		{"2a00:1450:4864:20::331", "mail-wm1-x331.google.com", "google.com", OrgDomain},
		{"2607:f8b0:4864:20::1149", "mail-yw1-x1149.google.com", "google.com", OrgDomain},
		// Microsoft: Exchange Online, Outlook.com (the "oln" names carry the
		// address zero-padded, a form rule 5 does not read), EOP.
		{"40.107.92.54", "mail-bn7nam10on2054.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		{"40.107.113.124", "mail-os0jpn01on2124.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		{"104.47.17.105", "mail-db8eur05lp2105.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		{"104.47.57.171", "mail-dm6nam11lp2171.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		{"52.101.66.27", "mail-northeuropeazon11012027.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		{"40.107.162.71", "mail-francecentralazon11013071.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		{"40.92.255.81", "mail-oln040092255081.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		{"40.93.3.13", "mail-oln040093003013.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		{"2a01:111:f400:7e88::61b", "mail-dm6nam10on2061b.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		{"2a01:111:f403:2c0e::800", "mail-am7eur03on20800.outbound.protection.outlook.com", "outlook.com", OrgDomain},
		// Amazon SES: two octets of the client and no keyword.
		{"54.240.11.75", "a11-75.smtp-out.amazonses.com", "amazonses.com", OrgDomain},
		{"54.240.37.140", "a37-140.smtp-out.amazonses.com", "amazonses.com", OrgDomain},
		{"54.240.48.90", "a48-90.smtp-out.amazonses.com", "amazonses.com", OrgDomain},
		{"54.240.8.29", "a8-29.smtp-out.amazonses.com", "amazonses.com", OrgDomain},
		{"54.240.27.55", "a27-55.smtp-out.us-west-2.amazonses.com", "amazonses.com", OrgDomain},
		// Yahoo and AOL.
		{"74.6.132.229", "sonic306-30.consmr.mail.ne1.yahoo.com", "yahoo.com", OrgDomain},
		{"98.137.69.84", "sonic311-22.consmr.mail.gq1.yahoo.com", "yahoo.com", OrgDomain},
		{"87.248.110.32", "sonic301-5.consmr.mail.ir2.yahoo.com", "yahoo.com", OrgDomain},
		// Apple.
		{"17.57.155.23", "ms11p00im-qufo17281301.me.com", "me.com", OrgDomain},
		{"17.58.63.178", "st43p00im-zteg10063501.me.com", "me.com", OrgDomain},
		{"17.58.23.185", "mr85p00im-hyfv06021301.me.com", "me.com", OrgDomain},
		{"57.103.88.5", "p-east2-cluster3-host2-snip4-5.eps.apple.com", "apple.com", OrgDomain},
		// Mailchimp, Mandrill.
		{"205.201.139.12", "mail12.atl61.mcsv.net", "mcsv.net", OrgDomain},
		{"198.2.128.42", "mail42.atl61.mcsv.net", "mcsv.net", OrgDomain},
		{"198.2.180.7", "mail180-7.suw31.mandrillapp.com", "mandrillapp.com", OrgDomain},
		{"198.2.136.232", "mail136-232.atl41.rsgsv.net", "rsgsv.net", OrgDomain},
		{"198.2.138.232", "mail138-232.atl121.mcdlv.net", "mcdlv.net", OrgDomain},
		// SendGrid.
		{"168.245.118.209", "xvfrtsdk.outbound-mail.sendgrid.net", "sendgrid.net", OrgDomain},
		{"167.89.17.173", "xtrwkkxd.outbound-mail.sendgrid.net", "sendgrid.net", OrgDomain},
		{"149.72.154.232", "s.wrqvwxzv.outbound-mail.sendgrid.net", "sendgrid.net", OrgDomain},
		{"159.183.224.102", "s.wfbtzhss.outbound-mail.sendgrid.net", "sendgrid.net", OrgDomain},
		{"50.31.63.240", "pnkfpffh.outbound-mail.sendgrid.net", "sendgrid.net", OrgDomain},
		// Mailgun: "so254-9" is two octets of 198.61.254.9, no keyword.
		{"69.72.43.7", "m43-7.mailgun.net", "mailgun.net", OrgDomain},
		{"198.61.254.9", "so254-9.mailgun.net", "mailgun.net", OrgDomain},
		{"159.135.228.62", "m228-62.mailgun.net", "mailgun.net", OrgDomain},
		{"161.38.204.101", "m204-101.eu.mailgun.net", "mailgun.net", OrgDomain},
		// SparkPost: the older names carry two octets, the newer three
		// (those need pool_domains, see Defaults).
		{"192.174.81.96", "mta-81-96.sparkpostmail.com", "sparkpostmail.com", OrgDomain},
		{"147.253.210.36", "mta-210-36.sparkpostmail.com", "sparkpostmail.com", OrgDomain},
		{"168.203.32.122", "mta-203-32-122.sparkpostmail.com", sub, AddressInName},
		{"192.174.81.113", "mta-174-81-113.atlassian.net.sparkpostmail.com", sub, AddressInName},
		// Postmark.
		{"104.245.209.200", "mta200a-ord.mtasv.net", "mtasv.net", OrgDomain},
		{"104.245.209.248", "mta248b-ord.mtasv.net", "mtasv.net", OrgDomain},
		{"50.31.205.206", "mta206-ab1.mtasv.net", "mtasv.net", OrgDomain},
		// Zoho.
		{"136.143.188.51", "sender4-of-o51.zoho.com", "zoho.com", OrgDomain},
		{"136.143.184.112", "sender4-op-o12.zoho.com", "zoho.com", OrgDomain},
		{"136.143.169.52", "sender-of-o52.zoho.eu", "zoho.eu", OrgDomain},
		// GMX, web.de, 1&1, mailbox.org.
		{"212.227.17.21", "mout.gmx.net", "gmx.net", OrgDomain},
		{"212.227.15.18", "mout.gmx.net", "gmx.net", OrgDomain},
		{"212.227.17.12", "mout-xforward.gmx.net", "gmx.net", OrgDomain},
		{"217.72.192.78", "mout.web.de", "web.de", OrgDomain},
		{"212.227.126.130", "mout.kundenserver.de", "kundenserver.de", OrgDomain},
		{"74.208.4.197", "mout.perfora.net", "perfora.net", OrgDomain},
		{"80.241.56.171", "mout-p-101.mailbox.org", "mailbox.org", OrgDomain},
		// OVH's mail relays.
		{"46.105.45.231", "mo535.mail-out.ovh.net", "ovh.net", OrgDomain},
		{"178.32.108.172", "3.mo548.mail-out.ovh.net", "ovh.net", OrgDomain},
		// Fastmail.
		{"103.168.172.144", "out1-smtp.messagingengine.com", "messagingengine.com", OrgDomain},
		{"103.168.172.154", "fout-a1-smtp.messagingengine.com", "messagingengine.com", OrgDomain},
		{"202.12.124.149", "fhigh-a4-smtp.messagingengine.com", "messagingengine.com", OrgDomain},
		// Proton: "40131" is 40 and 131 run together, not read as octets.
		{"185.70.40.131", "mail-40131.protonmail.ch", "protonmail.ch", OrgDomain},
		{"185.70.43.16", "mail-4316.protonmail.ch", "protonmail.ch", OrgDomain},
		{"79.135.106.31", "mail-10631.protonmail.ch", "protonmail.ch", OrgDomain},
		{"185.70.42.201", "mail-0201.mail-europe.com", "mail-europe.com", OrgDomain},
		// Yandex.
		{"77.88.28.123", "forward500b.mail.yandex.net", "yandex.net", OrgDomain},
		{"178.154.239.81", "forward102a.mail.yandex.net", "yandex.net", OrgDomain},
		{"2a02:6b8:c0f:1e:0:640:2a8f:0", "mail-nwsmtp-smtp-production-main-45.vla.yp-c.yandex.net", "yandex.net", OrgDomain},
		// mail.ru.
		{"217.69.128.46", "f123.i.mail.ru", "mail.ru", OrgDomain},
		{"94.100.181.251", "smtp48.i.mail.ru", "mail.ru", OrgDomain},
		{"217.69.139.253", "fallback16.i.mail.ru", "mail.ru", OrgDomain},
		// QQ: pool hosts named after their address need pool_domains.
		{"43.163.128.49", "xmbghk7.mail.qq.com", "qq.com", OrgDomain},
		{"54.206.16.166", "smtpbg151.qq.com", "qq.com", OrgDomain},
		{"203.205.221.190", "out203-205-221-190.mail.qq.com", sub, AddressInName},
		{"43.154.54.12", "biz-43-154-54-12.mail.qq.com", sub, AddressInName},
		// 126.com/163.com: two octets, no keyword.
		{"220.181.12.34", "m12-34.126.com", "126.com", OrgDomain},
		{"115.124.30.130", "out30-130.freemail.mail.aliyun.com", "aliyun.com", OrgDomain},
		// Salesforce, HubSpot, Facebook, LinkedIn, Twitter, GitHub.
		{"136.147.176.6", "smtp06-ia4-sp1.mta.salesforce.com", "salesforce.com", OrgDomain},
		{"68.232.197.97", "mta1.exacttarget.com", "exacttarget.com", OrgDomain},
		{"143.244.84.66", "bd77e74.bf05.eu1.hubspotemail.net", "hubspotemail.net", OrgDomain},
		{"54.174.52.216", "pgg17e.bf01x.hubspotemail.net", "hubspotemail.net", OrgDomain},
		{"66.220.144.178", "outmail.facebook.com", "facebook.com", OrgDomain},
		{"66.220.155.142", "66-220-155-142.mail-mail.facebook.com", sub, AddressInName},
		{"108.174.6.215", "mailb-ag.linkedin.com", "linkedin.com", OrgDomain},
		{"199.59.150.79", "spruce-goose-ag.twitter.com", "twitter.com", OrgDomain},
		{"192.30.252.206", "out-23.smtp.github.com", "github.com", OrgDomain},
		// Filtering services and gateways.
		{"205.220.168.131", "mx0a-0031df01.pphosted.com", "pphosted.com", OrgDomain},
		{"185.58.85.151", "eu-smtp-delivery-151.mimecast.com", "mimecast.com", OrgDomain},
		{"209.222.82.188", "mx-outbound8-188.us-east-2a.ess.aws.cudaops.com", "cudaops.com", OrgDomain},
		// Universities and corporate MX names.
		{"18.9.28.11", "outgoing-auth-1.mit.edu", "mit.edu", OrgDomain},
		{"128.232.25.21", "ppsw-21.csi.cam.ac.uk", "cam.ac.uk", OrgDomain},
		{"130.237.48.41", "smtp-1.sys.kth.se", "kth.se", OrgDomain},
		{"134.2.2.12", "mx01.uni-tuebingen.de", "uni-tuebingen.de", OrgDomain},
		{"192.0.2.25", "mailgw1.cs.example.edu", "example.edu", OrgDomain},
		{"198.51.100.20", "mailout2.example.com", "example.com", OrgDomain},
		{"203.0.113.30", "smtp-out-3.mail.example.co.uk", "example.co.uk", OrgDomain},
		{"203.0.113.31", "mx.example.com.au", "example.com.au", OrgDomain},
		{"203.0.113.32", "smtp.example.co.jp", "example.co.jp", OrgDomain},
		{"203.0.113.33", "mail.xn--80ak6aa92e.xn--p1ai", "xn--80ak6aa92e.xn--p1ai", OrgDomain},
		{"203.0.113.34", "mx.example.gov.uk", "example.gov.uk", OrgDomain},
		{"203.0.113.35", "example.com", "example.com", OrgDomain},
		// A name with digits that are not this client's address is not
		// dynamic by rule 5.
		{"198.51.100.9", "mail-203-0-113-9.example.com", "example.com", OrgDomain},
		{"198.51.100.9", "mx-113-9.example.com", "example.com", OrgDomain},
		{"203.0.113.9", "mx-113-9.example.com", "example.com", OrgDomain},
		{"198.51.100.7", "relay-1-2-3.example.net", "example.net", OrgDomain},

		// Residential and business access networks.
		{"98.200.1.2", "c-98-200-1-2.hsd1.tx.comcast.net", sub, AddressInName},
		{"198.51.100.7", "c-73-15-220-11.hsd1.ca.comcast.net", sub, DynamicKeyword},
		{"50.201.10.20", "50-201-10-20-static.hfc.comcastbusiness.net", sub, AddressInName},
		{"71.250.9.17", "static-71-250-9-17.nwrknj.fios.verizon.net", sub, AddressInName},
		{"71.112.5.6", "pool-71-112-5-6.washdc.east.verizon.net", sub, AddressInName},
		{"108.200.1.2", "108-200-1-2.lightspeed.sntcca.sbcglobal.net", sub, AddressInName},
		{"69.150.73.42", "adsl-69-150-73-42.dsl.snantx.swbell.net", sub, AddressInName},
		{"66.68.12.34", "cpe-66-68-12-34.austin.res.rr.com", sub, AddressInName},
		{"174.100.20.30", "syn-174-100-020-030.res.spectrum.com", sub, AddressInName},
		{"24.123.45.67", "rrcs-24-123-45-67.west.biz.rr.com", sub, AddressInName},
		{"68.1.2.3", "ip68-1-2-3.ph.ph.cox.net", sub, AddressInName},
		{"70.184.5.6", "wsip-70-184-5-6.ph.ph.cox.net", sub, AddressInName},
		{"86.1.2.3", "host86-1-2-3.range86-1.btcentralplus.com", sub, AddressInName},
		{"81.129.40.50", "host81-129-40-50.range81-129.btcentralplus.com", sub, AddressInName},
		{"81.100.200.50", "cpc123456-bagu17-2-0-cust123.1-3.cable.virginm.net", sub, DynamicKeyword},
		{"94.12.18.52", "5e0c1234.bb.sky.com", sub, AddressInName},
		{"2003:e1:a712:3400:b1c2:d3e4:f5a6:b7c8", "p200300e1a7123400b1c2d3e4f5a6b7c8.dip0.t-ipconnect.de", sub, AddressInName},
		{"192.0.2.1", "p5b0a1234.dip0.t-ipconnect.de", sub, DynamicKeyword},
		{"188.109.1.2", "dslb-188-109-1-2.188.109.pools.vodafone-ip.de", sub, AddressInName},
		{"95.90.18.52", "ip5f5a1234.dynamic.kabel-deutschland.de", sub, AddressInName},
		{"77.189.18.52", "x4dbd1234.dyn.telefonica.de", sub, AddressInName},
		{"86.198.56.123", "lfbn-idf3-1-123-56.w86-198.abo.wanadoo.fr", sub, AddressInName},
		{"82.65.43.21", "mar75-1-82-65-43-21.fbx.proxad.net", sub, AddressInName},
		{"89.156.12.34", "89-156-12-34.rev.numericable.fr", sub, AddressInName},
		{"109.19.34.56", "56.34.19.109.rev.sfr.net", sub, AddressInName},
		{"83.45.67.34", "34.red-83-45-67.dynamicip.rima-tde.net", sub, AddressInName},
		{"83.45.67.34", "host34-67-dynamic.45-83-r.retail.telecomitalia.it", sub, AddressInName},
		{"79.12.34.56", "host-79-12-34-56.business.telecomitalia.it", sub, AddressInName},
		{"84.86.12.34", "84-86-12-34.fixed.kpn.net", sub, AddressInName},
		{"83.160.12.34", "a83-160-12-34.adsl.xs4all.nl", sub, AddressInName},
		{"83.85.171.205", "5355abcd.cm-6-6c.dynamic.ziggo.nl", sub, AddressInName},
		{"89.67.34.12", "12.34-67-89.adsl-dyn.isp.belgacom.be", sub, AddressInName},
		{"81.11.1.2", "ip-81-11-1-2.dsl.scarlet.be", sub, AddressInName},
		{"178.82.12.34", "178-82-12-34.dynamic.hispeed.ch", sub, AddressInName},
		{"178.38.12.34", "adsl-178-38-12-34.adslplus.ch", sub, AddressInName},
		{"76.65.4.3", "bras-base-toroon0123w-grc-12-76-65-4-3.dsl.bell.ca", sub, AddressInName},
		{"99.250.77.88", "cpe00fc8d1d2e3f-cm00fc8d1d2e3d.cpe.net.cable.rogers.com", sub, DynamicKeyword},
		{"24.80.1.2", "s0106aabbccddeeff.vc.shawcable.net", sub, DynamicKeyword},
		{"58.174.12.34", "cpe-58-174-12-34.bpw3-r-961.woo.qld.bigpond.net.au", sub, AddressInName},
		{"123.243.12.34", "123-243-12-34.tpgi.com.au", sub, AddressInName},
		{"211.30.12.34", "c211-30-12-34.mirnd4.nsw.optusnet.com.au", sub, AddressInName},
		{"153.1.2.3", "p1234567-ipngn1234funabasi.chiba.ocn.ne.jp", sub, DynamicKeyword},
		{"153.1.2.4", "p3012345-ipoe.ipoe.ocn.ne.jp", sub, DynamicKeyword},
		{"111.239.185.222", "KD111239185222.ppp-bb.dion.ne.jp", sub, DynamicKeyword},
		{"89.67.45.123", "123.45.67.89.broad.gz.gd.dynamic.163data.com.cn", sub, AddressInName},
		{"114.34.12.56", "114-34-12-56.hinet-ip.hinet.net", sub, AddressInName},
		{"1.34.56.78", "1-34-56-78.dynamic-ip.hinet.net", sub, AddressInName},
		{"122.168.150.34", "abts-kk-dynamic-034.150.168.122.airtelbroadband.in", sub, AddressInName},
		{"46.242.12.34", "broadband-46-242-12-34.ip.moscow.rt.ru", sub, AddressInName},
		{"91.76.12.34", "ppp91-76-12-34.pppoe.mtu-net.ru", sub, AddressInName},
		{"133.201.1.2", "FL1-133-201-1-2.kng.mesh.ad.jp", sub, AddressInName},

		// Cloud and hosting.
		{"3.120.1.2", "ec2-3-120-1-2.eu-central-1.compute.amazonaws.com", sub, NoOrgDomain},
		{"34.1.2.3", "3.2.1.34.bc.googleusercontent.com", sub, AddressInName},
		{"20.1.2.3", "myvm.westeurope.cloudapp.azure.com", sub, DynamicKeyword},
		{"20.1.2.4", "mail.cloudapp.net", sub, NoOrgDomain},
		{"88.198.12.34", "static.88.198.12.34.clients.your-server.de", sub, AddressInName},
		{"2a01:4f8:c17:1234::2", "static.2a01-4f8-c17-1234--2.clients.your-server.de", sub, DynamicKeyword},
		{"51.75.12.34", "ns3012345.ip-51-75-12.eu", sub, AddressInName},
		{"51.68.77.88", "vps-1a2b3c4d.vps.ovh.net", sub, DynamicKeyword},
		{"45.79.12.34", "li123-45.members.linode.com", sub, NoOrgDomain},
		{"45.79.12.35", "45-79-12-35.ip.linodeusercontent.com", sub, NoOrgDomain},
		{"45.77.12.34", "45.77.12.34.vultrusercontent.com", sub, AddressInName},
		{"172.31.1.2", "ip-172-31-1-2.ec2.internal", sub, NoOrgDomain},
		// A customer's own name on a rented machine is the customer's.
		{"164.90.1.2", "mail.example-shop.de", "example-shop.de", OrgDomain},
		// Left to the organisation: a hosting name with neither address nor
		// keyword (see README, "Bugs").
		{"161.97.1.2", "vmi123456.contaboserver.net", "contaboserver.net", OrgDomain},

		// Rule 1: no verified name.
		{"192.0.2.1", "unknown", sub, NoName},
		{"192.0.2.1", "UNKNOWN", sub, NoName},
		{"192.0.2.1", "", sub, NoName},
		{"192.0.2.1", ".", sub, NoName},
		{"192.0.2.1", "mail..example.com", sub, NoName},
		{"192.0.2.1", ".mail.example.com", sub, NoName},
		{"192.0.2.1", "mail.example.com..", sub, NoName},
		{"192.0.2.1", "-mail.example.com", sub, NoName},
		{"192.0.2.1", "mail-.example.com", sub, NoName},
		{"192.0.2.1", "mail_1.example.com", sub, NoName},
		{"192.0.2.1", "mail example.com", sub, NoName},
		{"192.0.2.1", "mail.example.com/24", sub, NoName},
		{"192.0.2.1", "mäil.example.com", sub, NoName},
		{"192.0.2.1", "192.0.2.1", sub, NoName},
		{"192.0.2.1", "[192.0.2.1]", sub, NoName},
		{"192.0.2.1", "mail.example.123", sub, NoName},
		{"192.0.2.1", strings.Repeat("a", 64) + ".example.com", sub, NoName},
		{"192.0.2.1", strings.Repeat("a.", 125) + "example.com", sub, NoName}, // 261 characters
		// Valid at the limits.
		{"192.0.2.1", strings.Repeat("a", 63) + ".example.com", "example.com", OrgDomain},
		{"192.0.2.1", strings.Repeat("a.", 120) + "example.com", "example.com", OrgDomain},       // 251 characters
		{"192.0.2.1", strings.Repeat("a.", 121) + "example.com" + ".", "example.com", OrgDomain}, // 253 and a root dot
		{"192.0.2.1", strings.Repeat("a.", 121) + "example.com.", "example.com", OrgDomain},      // same
		{"192.0.2.1", strings.Repeat("a.", 121) + "example.coma" + ".", sub, NoName},             // 254
		{"192.0.2.1", "1.example.com", "example.com", OrgDomain},                                 // digits-only inner label
		{"192.0.2.1", "a--b.example.com", "example.com", OrgDomain},                              // inner double hyphen

		// Case and the root dot.
		{"209.85.214.173", "Mail-PL1-F173.Google.COM", "google.com", OrgDomain},
		{"209.85.214.173", "mail-pl1-f173.google.com.", "google.com", OrgDomain},
		{"91.10.18.52", "P5B0A1234.DIP0.T-IPCONNECT.DE", sub, AddressInName},

		// Rule 4: no registrable ICANN domain.
		{"192.0.2.1", "com", sub, NoOrgDomain},
		{"192.0.2.1", "co.uk", sub, NoOrgDomain},
		{"192.0.2.1", "localhost", sub, NoOrgDomain},
		{"192.0.2.1", "mail", sub, NoOrgDomain},
		{"192.0.2.1", "mail.corp.internal", sub, NoOrgDomain},
		{"192.0.2.1", "host.local", sub, NoOrgDomain},
		{"192.0.2.1", "mx.example", sub, NoOrgDomain},
		{"192.0.2.1", "myhome.dyndns.org", sub, NoOrgDomain},
		{"192.0.2.1", "x.duckdns.org", sub, NoOrgDomain},
		{"192.0.2.1", "mail.example.uk.com", sub, NoOrgDomain},
		{"192.0.2.1", "foo.blogspot.com", sub, NoOrgDomain},
		{"192.0.2.1", "x.hosting.ovh.net", sub, NoOrgDomain},
		// ICANN wildcards and exceptions ("*.kawasaki.jp", "!city.kawasaki.jp").
		{"192.0.2.1", "a.b.kawasaki.jp", "a.b.kawasaki.jp", OrgDomain},
		{"192.0.2.1", "mail.city.kawasaki.jp", "city.kawasaki.jp", OrgDomain},
		{"192.0.2.1", "b.kawasaki.jp", sub, NoOrgDomain},

		// Rule 5 forms, against 203.0.113.9 and 2001:db8::/64 clients.
		{"203.0.113.9", "host-203-0-113-9.example.net", sub, AddressInName},
		{"203.0.113.9", "static-9-113-0-203.example.net", sub, AddressInName},
		{"10.1.2.3", "ip-10-1-2-3.example.net", sub, AddressInName},
		{"73.15.220.11", "11.220.15.73.in-addr.example.net", sub, AddressInName},
		{"203.0.113.9", "mail-0-113-9.example.com", sub, AddressInName},
		{"203.0.113.9", "x203y0z113.example.com", sub, AddressInName},
		{"203.0.113.9", "host-203-000-113-009.example.net", sub, AddressInName},
		{"203.0.113.9", "cb007109.example.net", sub, AddressInName},
		{"203.0.113.9", "h3405803785.example.net", sub, AddressInName},
		{"203.0.113.9", "host-113-9.example.net", sub, AddressInName},
		{"203.0.113.9", "dyn-113-9.example.net", sub, AddressInName},
		{"203.0.113.9", "9-113.rev.example.net", sub, AddressInName},
		{"203.0.113.9", "mx-203-0.example.net", "example.net", OrgDomain},
		{"203.0.113.9", "host-203-113.example.net", "example.net", OrgDomain}, // not adjacent
		{"203.0.113.9", "mx-113-9-203.example.net", "example.net", OrgDomain}, // 113, 9, 203 is no window
		{"203.0.113.9", "mail-2030-1139.example.net", "example.net", OrgDomain},
		{"203.0.113.9", "203-0-113-9.net", sub, AddressInName},
		{"::ffff:73.15.220.11", "c-73-15-220-11.hsd1.ca.comcast.net", sub, AddressInName},
		{"2001:db8::7", "c-73-15-220-11.hsd1.ca.comcast.net", sub, DynamicKeyword},
		{"2001:db8:1:2:abcd:1234:5678:9abc", "v6-abcd-1234-5678.example.net", sub, AddressInName},
		{"2001:db8:1:2:abcd:1234:5678:9abc", "x-1234-5678-9abc.example.net", sub, AddressInName},
		{"2001:db8:1:2:abcd:1234:5678:9abc", "9abc.5678.1234.example.net", sub, AddressInName},
		{"2001:db8:1:2:abcd:1234:5678:9abc", "abcd-12345678.example.net", "example.net", OrgDomain},
		{"2001:db8:1:2:abcd:1234:5678:9abc", "hostabcd123456789abc.example.net", sub, AddressInName},
		{"2001:db8::1:2:3:4", "host-0001-0002-0003.example.net", sub, AddressInName},
		{"2001:db8::1", "mx-0-0-1.example.net", sub, AddressInName},
		{"2001:db8::1", "mx-0-0-0.example.net", "example.net", OrgDomain},
		{"2001:db8::1", "mx-1-2-3.example.net", "example.net", OrgDomain},
		{"2001:db8:1:2:abcd:1234:5678:9abc", "abcd-1234.example.net", "example.net", OrgDomain},
		// No address given: only the name decides.
		{"", "mail-pl1-f173.google.com", "google.com", OrgDomain},
		{"", "c-73-15-220-11.hsd1.ca.comcast.net", sub, DynamicKeyword},

		// Rule 6 keywords: a token of the host labels, never of the
		// organisation's own label.
		{"192.0.2.1", "dynamic.example.net", sub, DynamicKeyword},
		{"192.0.2.1", "smtp.home.example.com", sub, DynamicKeyword},
		{"192.0.2.1", "relay.users.example.org", sub, DynamicKeyword},
		{"192.0.2.1", "staticip-1.example.com", sub, DynamicKeyword},
		{"192.0.2.1", "mx.clientes.example.es", sub, DynamicKeyword},
		{"192.0.2.1", "adsl2.example.net", sub, DynamicKeyword},
		{"192.0.2.1", "pppoe7.example.net", sub, DynamicKeyword},
		{"192.0.2.1", "wifi-guest.example.org", sub, DynamicKeyword},
		{"192.0.2.1", "mail.dynamic-solutions.com", "dynamic-solutions.com", OrgDomain},
		{"192.0.2.1", "mx1.homedepot.com", "homedepot.com", OrgDomain},
		{"192.0.2.1", "homer.example.com", "example.com", OrgDomain},
		{"192.0.2.1", "dslam.example.com", "example.com", OrgDomain},
		{"192.0.2.1", "mail.server.example.com", "example.com", OrgDomain},
		{"192.0.2.1", "host.example.com", "example.com", OrgDomain},
		{"192.0.2.1", "mx-deadbeefcafe.example.com", "example.com", OrgDomain},
		{"192.0.2.1", "mx-0123456789.example.com", "example.com", OrgDomain},
		{"192.0.2.1", "cm-a0b1c2d3e4f5.example.net", sub, DynamicKeyword},
	}
	m := New(Config{})
	for i, tc := range tests {
		check(t, m, i, tc.addr, tc.name, tc.want, tc.rule)
	}
	if len(tests) < 150 {
		t.Errorf("only %d rows", len(tests))
	}
}

// TestLists covers pool_domains and dynamic_domains: label-boundary
// matching, precedence and the normalisation New applies.
func TestLists(t *testing.T) {
	m := New(Config{
		PoolDomains: []string{
			"outlook.com",
			"mail.qq.com",
			" Example.NET. ", // normalised to example.net
			".pool.example",  // normalised to pool.example
			"com",            // public suffix: dropped
			"compute-1.amazonaws.com",
			"bad_name.org", // invalid: dropped
			"",
		},
		DynamicDomains: []string{
			"protection.outlook.com", // pool entry above wins: rule 2 first
			"dyn.example.org",
			"dyndns.org",
			"ru",
		},
	})
	const sub = ""
	tests := []struct {
		addr, name string
		want       string
		rule       Rule
	}{
		{"40.107.93.57", "mail-dm6nam10on2057.outbound.protection.outlook.com", "outlook.com", PoolDomain},
		{"40.92.255.81", "mail-oln040092255081.outbound.protection.outlook.com", "outlook.com", PoolDomain},
		{"192.0.2.1", "outlook.com", "outlook.com", PoolDomain},
		{"192.0.2.1", "OUTLOOK.COM.", "outlook.com", PoolDomain},
		{"192.0.2.1", "notoutlook.com", "notoutlook.com", OrgDomain},
		{"192.0.2.1", "mail.notoutlook.com", "notoutlook.com", OrgDomain},
		{"192.0.2.1", "outlook.com.evil.example.com", "example.com", OrgDomain},
		{"192.0.2.1", "mail.outlook.co", "outlook.co", OrgDomain},
		{"203.205.221.190", "out203-205-221-190.mail.qq.com", "mail.qq.com", PoolDomain},
		{"43.154.54.12", "biz-43-154-54-12.mail.qq.com", "mail.qq.com", PoolDomain},
		{"54.206.16.166", "smtpbg151.qq.com", "qq.com", OrgDomain},
		{"192.0.2.1", "mx.example.net", "example.net", PoolDomain},
		{"192.0.2.1", "MX.EXAMPLE.NET", "example.net", PoolDomain},
		{"192.0.2.1", "c-1-2-3-4.dynamic.pool.example", "pool.example", PoolDomain},
		{"192.0.2.1", "pool.example", "pool.example", PoolDomain},
		{"192.0.2.1", "xpool.example", sub, NoOrgDomain},
		{"192.0.2.1", "mail.google.com", "google.com", OrgDomain},
		{"54.1.2.3", "ec2-54-1-2-3.compute-1.amazonaws.com", sub, NoOrgDomain},
		{"192.0.2.1", "host.dyn.example.org", sub, DynamicDomain},
		{"192.0.2.1", "dyn.example.org", sub, DynamicDomain},
		{"192.0.2.1", "xdyn.example.org", "example.org", OrgDomain},
		{"192.0.2.1", "mail.example.org", "example.org", OrgDomain},
		{"192.0.2.1", "myhome.dyndns.org", sub, DynamicDomain},
		{"192.0.2.1", "f123.i.mail.ru", sub, DynamicDomain},
		{"192.0.2.1", "unknown", sub, NoName},
		{"192.0.2.1", "", sub, NoName},
		{"192.0.2.1", "bad_name.org", sub, NoName},
	}
	for i, tc := range tests {
		check(t, m, i, tc.addr, tc.name, tc.want, tc.rule)
	}

	// A nil or empty Matcher applies the other rules.
	for i, m := range []*Matcher{nil, New(Config{})} {
		check(t, m, i, "40.107.93.57", "mail-dm6nam10on2057.outbound.protection.outlook.com", "outlook.com", OrgDomain)
		check(t, m, i, "192.0.2.1", "f123.i.mail.ru", "mail.ru", OrgDomain)
		check(t, m, i, "192.0.2.1", "outlook.com.evil.example.com", "example.com", OrgDomain)
	}
}

// TestDefaults checks that the shipped lists pass their own checks and do
// what their comments say.
func TestDefaults(t *testing.T) {
	d := Defaults()
	for _, e := range d.PoolDomains {
		if err := CheckPoolDomain(e); err != nil {
			t.Errorf("pool %q: %v", e, err)
		}
	}
	for _, e := range d.DynamicDomains {
		if err := CheckDynamicDomain(e); err != nil {
			t.Errorf("dynamic %q: %v", e, err)
		}
	}
	m := New(d)
	const sub = ""
	tests := []struct {
		addr, name string
		want       string
		rule       Rule
	}{
		{"66.220.155.142", "66-220-155-142.mail-mail.facebook.com", "facebook.com", PoolDomain},
		{"69.171.232.143", "69-171-232-143.mail-mail.facebook.com", "facebook.com", PoolDomain},
		{"203.205.221.190", "out203-205-221-190.mail.qq.com", "qq.com", PoolDomain},
		{"162.62.58.211", "out162-62-58-211.mail.qq.com", "qq.com", PoolDomain},
		{"168.203.32.122", "mta-203-32-122.sparkpostmail.com", "sparkpostmail.com", PoolDomain},
		{"192.174.81.96", "mta-81-96.sparkpostmail.com", "sparkpostmail.com", PoolDomain},
		{"106.128.147.108", "KD106128147108.au-net.ne.jp", sub, DynamicDomain},
		{"126.12.34.56", "softbank126012034056.bbtec.net", sub, DynamicDomain},
		{"209.85.214.173", "mail-pl1-f173.google.com", "google.com", OrgDomain},
		{"73.15.220.11", "c-73-15-220-11.hsd1.ca.comcast.net", sub, AddressInName},
	}
	for i, tc := range tests {
		check(t, m, i, tc.addr, tc.name, tc.want, tc.rule)
	}
}

func TestCheckDomain(t *testing.T) {
	tests := []struct {
		d             string
		pool, dynamic bool // accepted
	}{
		{"example.com", true, true},
		{"mail.qq.com", true, true},
		{"outbound.protection.outlook.com", true, true},
		{"amazonaws.com", true, true},
		{"com", false, true},
		{"co.uk", false, true},
		{"dyndns.org", false, true},
		{"compute-1.amazonaws.com", false, true},
		{"", false, false},
		{".example.com", false, false},
		{"Example.com", false, false},
		{"example.com.", false, false},
		{"bad_name.com", false, false},
		{"exa mple.com", false, false},
		{"192.0.2.1", false, false},
	}
	for i, tc := range tests {
		if err := CheckPoolDomain(tc.d); (err == nil) != tc.pool {
			t.Errorf("%d: CheckPoolDomain(%q) = %v, want accepted %v", i, tc.d, err, tc.pool)
		}
		if err := CheckDynamicDomain(tc.d); (err == nil) != tc.dynamic {
			t.Errorf("%d: CheckDynamicDomain(%q) = %v, want accepted %v", i, tc.d, err, tc.dynamic)
		}
	}
}

func TestRuleString(t *testing.T) {
	tests := []struct {
		r    Rule
		want string
	}{
		{NoName, "no-name"},
		{PoolDomain, "pool-domain"},
		{DynamicDomain, "dynamic-domain"},
		{NoOrgDomain, "no-org-domain"},
		{AddressInName, "address-in-name"},
		{DynamicKeyword, "dynamic-keyword"},
		{OrgDomain, "org-domain"},
		{Rule(7), "rule(7)"},
		{Rule(255), "rule(255)"},
	}
	for i, tc := range tests {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%d: Rule(%d).String() = %q, want %q", i, uint8(tc.r), got, tc.want)
		}
	}
}

// TestNoAllocs pins the allocation-free path for lower-case names that
// never reach the Public Suffix List: unknown, invalid and listed names.
func TestNoAllocs(t *testing.T) {
	m := New(Defaults())
	addr := netip.MustParseAddr("203.205.221.190")
	for _, name := range []string{"unknown", "", "mail..example.com", "out203-205-221-190.mail.qq.com", "kd106128147108.au-net.ne.jp"} {
		if n := testing.AllocsPerRun(100, func() { m.Of(addr, name) }); n != 0 {
			t.Errorf("Of(%q): %v allocations, want 0", name, n)
		}
	}
}
