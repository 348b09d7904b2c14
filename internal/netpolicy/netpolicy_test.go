package netpolicy_test

import (
	"context"
	"database/sql"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/netpolicy"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func strs(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func TestACL07_ParseRangesAcceptsIPv4AndIPv6InCanonicalForm(t *testing.T) {
	got, err := netpolicy.ParseRanges([]string{"2001:db8::/32", "10.0.0.0/8", " 192.0.2.7 ", "10.0.0.0/8", "2001:DB8:1::1", "0.0.0.0/0"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0.0.0.0/0", "10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "2001:db8:1::1/128"}
	if got := strs(got); !slices.Equal(got, want) {
		t.Errorf("netpolicy.ParseRanges = %q, want %q", got, want)
	}
	if got, err := netpolicy.ParseRanges(nil); err != nil || len(got) != 0 {
		t.Errorf("netpolicy.ParseRanges(nil) = %v, %v; want no ranges", got, err)
	}
}

func TestACL07_InvalidCIDRIsRefusedWithClearMessage(t *testing.T) {
	many := make([]string, netpolicy.MaxRanges+1)
	for i := range many {
		many[i] = "10.0.0.0/8"
	}
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"10.0.0.0/33"}, `range 1 ("10.0.0.0/33"): not a CIDR range`},
		{[]string{"10.0.0.0/8", "2001:db8::/129"}, `range 2 ("2001:db8::/129"): not a CIDR range`},
		{[]string{"10.1.2.3/8"}, "did you mean 10.0.0.0/8?"},
		{[]string{"2001:db8::1/32"}, "did you mean 2001:db8::/32?"},
		{[]string{""}, "empty"},
		{[]string{"intranet"}, "not an address or CIDR range"},
		{[]string{"10.0.0.0/8/8"}, "not a CIDR range"},
		{[]string{"fe80::1%eth0"}, "not an address or CIDR range"},
		{[]string{"fe80::%eth0/64"}, "not a CIDR range"},
		{[]string{"::ffff:10.0.0.0/104"}, "IPv4-mapped"},
		{[]string{"::ffff:10.0.0.1"}, "write it as 10.0.0.1"},
		{[]string{"10.0.0.0/-1"}, "not a CIDR range"},
		{[]string{"010.0.0.0/8"}, "not a CIDR range"},
		{many, "at most 64 ranges"},
	} {
		_, err := netpolicy.ParseRanges(tc.in)
		if !errs.Is(err, errs.Invalid) || !strings.Contains(errs.SafeMessage(err), tc.want) {
			t.Errorf("netpolicy.ParseRanges(%q) = %v; want invalid, mentioning %q", tc.in, err, tc.want)
		}
	}
}

func TestACL07_AllowsMatchesIPv4IPv6AndFailsClosed(t *testing.T) {
	rs := prefixes(t, "10.0.0.0/8", "2001:db8::/32")
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"11.0.0.1", false},
		{"::ffff:10.1.2.3", true}, // IPv4 seen through an IPv6 socket
		{"2001:db8:ffff::1", true},
		{"2001:db9::1", false},
		{"fe80::1%eth0", false},
		{"127.0.0.1", false},
		{"", false},
		{"local", false},
		{"10.1.2.3:443", false}, // not an address: never guessed at
	} {
		if got := netpolicy.Allows(rs, tc.addr); got != tc.want {
			t.Errorf("netpolicy.Allows(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	for _, addr := range []string{"", "local", "192.0.2.1"} {
		if !netpolicy.Allows(nil, addr) {
			t.Errorf("no ranges refused %q; want no restriction", addr)
		}
	}
}

func TestACL07_TrustedProxiesParse(t *testing.T) {
	got, err := netpolicy.ParseTrustedProxies(" 10.0.0.0/8, 192.0.2.1 ,2001:db8::/48")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strs(got), []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::/48"}; !slices.Equal(got, want) {
		t.Errorf("netpolicy.ParseTrustedProxies = %q, want %q", got, want)
	}
	if got, err := netpolicy.ParseTrustedProxies("  "); err != nil || got != nil {
		t.Errorf("empty setting = %v, %v; want no proxies", got, err)
	}
	for in, want := range map[string]string{
		"10.0.0.0/33":    `--trusted-proxy "10.0.0.0/33": not a CIDR range`,
		"10.0.0.1/8":     "did you mean 10.0.0.0/8?",
		"10.0.0.0/8,,":   `--trusted-proxy "": empty`,
		"proxy.internal": "not an address or CIDR range",
		"0.0.0.0/0":      "trusting every address",
		"::/0":           "trusting every address",
	} {
		_, err := netpolicy.ParseTrustedProxies(in)
		if !errs.Is(err, errs.Invalid) || !strings.Contains(errs.SafeMessage(err), want) {
			t.Errorf("netpolicy.ParseTrustedProxies(%q) = %v; want invalid, mentioning %q", in, err, want)
		}
	}
}

func TestACL07_ClientAddrBelievesOnlyTrustedProxies(t *testing.T) {
	trusted := prefixes(t, "10.0.0.0/8", "2001:db8:cafe::/48")
	for _, tc := range []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no proxy configured ignores the header", "203.0.113.9:5000", []string{"198.51.100.1"}, nil, "203.0.113.9"},
		{"untrusted peer ignores the header", "203.0.113.9:5000", []string{"198.51.100.1"}, trusted, "203.0.113.9"},
		{"trusted peer, one hop", "10.0.0.2:5000", []string{"198.51.100.1"}, trusted, "198.51.100.1"},
		{"trusted peer, no header", "10.0.0.2:5000", nil, trusted, "10.0.0.2"},
		{"right-most untrusted wins over a spoofed left part", "10.0.0.2:5000", []string{"1.2.3.4, 198.51.100.1, 10.9.9.9"}, trusted, "198.51.100.1"},
		{"several header lines read as one list", "10.0.0.2:5000", []string{"1.2.3.4", "198.51.100.1", "10.9.9.9"}, trusted, "198.51.100.1"},
		{"only trusted hops: the left-most of them", "10.0.0.2:5000", []string{"10.0.0.7, 10.0.0.8"}, trusted, "10.0.0.7"},
		{"garbage hop stops at the proxy that passed it", "10.0.0.2:5000", []string{"1.2.3.4, bogus"}, trusted, "10.0.0.2"},
		{"garbage left of an untrusted hop is never reached", "10.0.0.2:5000", []string{"bogus, 198.51.100.1"}, trusted, "198.51.100.1"},
		{"empty hop stops the walk", "10.0.0.2:5000", []string{"1.2.3.4,,10.0.0.3"}, trusted, "10.0.0.3"},
		{"hop with port", "10.0.0.2:5000", []string{"198.51.100.1:4711"}, trusted, "198.51.100.1"},
		{"IPv6 peer and hop", "[2001:db8:cafe::1]:5000", []string{"2001:db8:1::5"}, trusted, "2001:db8:1::5"},
		{"IPv6 hop with port", "10.0.0.2:5000", []string{"[2001:db8:1::5]:4711"}, trusted, "2001:db8:1::5"},
		{"IPv6 hop in brackets", "10.0.0.2:5000", []string{"[2001:db8:1::5]"}, trusted, "2001:db8:1::5"},
		{"IPv4-mapped peer is trusted as IPv4", "[::ffff:10.0.0.2]:5000", []string{"198.51.100.1"}, trusted, "198.51.100.1"},
		{"IPv4-mapped hop is unmapped", "10.0.0.2:5000", []string{"::ffff:198.51.100.1"}, trusted, "198.51.100.1"},
		{"peer without port", "10.0.0.2", []string{"198.51.100.1"}, trusted, "198.51.100.1"},
		{"unparseable peer is kept as is", "pipe", []string{"198.51.100.1"}, trusted, "pipe"},
	} {
		if got := netpolicy.ClientAddr(tc.remote, tc.xff, tc.trusted); got != tc.want {
			t.Errorf("%s: netpolicy.ClientAddr(%q, %q) = %q, want %q", tc.name, tc.remote, tc.xff, got, tc.want)
		}
	}
}

func TestACL07_PolicyIsStoredPerOrganizationAndStudy(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		var org, other orgs.Organization
		var study orgs.Study
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			if org, err = orgs.CreateOrganization(ctx, tx, "Clinic", ""); err != nil {
				return err
			}
			if other, err = orgs.CreateOrganization(ctx, tx, "Other", ""); err != nil {
				return err
			}
			if study, err = orgs.CreateStudy(ctx, tx, org.ID, orgs.KindStudy, "Trial"); err != nil {
				return err
			}
			if err := netpolicy.Replace(ctx, tx, org.ID, "", prefixes(t, "10.0.0.0/8", "2001:db8::/32")); err != nil {
				return err
			}
			if err := netpolicy.Replace(ctx, tx, org.ID, study.ID, prefixes(t, "10.1.0.0/16")); err != nil {
				return err
			}
			// Replacing the organization's ranges leaves the study's alone.
			return netpolicy.Replace(ctx, tx, org.ID, "", prefixes(t, "10.0.0.0/8"))
		})
		if err != nil {
			t.Fatal(err)
		}
		p, err := netpolicy.Load(ctx, db, org.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strs(p.Organization()), []string{"10.0.0.0/8"}; !slices.Equal(got, want) {
			t.Errorf("organization ranges = %q, want %q", got, want)
		}
		if got, want := strs(p.Study(study.ID)), []string{"10.1.0.0/16"}; !slices.Equal(got, want) {
			t.Errorf("study ranges = %q, want %q", got, want)
		}
		if !p.AllowsOrganization("10.2.0.1") || p.AllowsStudy(study.ID, "10.2.0.1") || !p.AllowsStudy(study.ID, "10.1.0.1") {
			t.Error("policy does not apply the study's ranges on top of the organization's")
		}
		if !p.AllowsStudy("", "192.0.2.1") || !p.AllowsStudy("some-other-study", "10.2.0.1") {
			t.Error("a study without ranges is restricted")
		}
		q, err := netpolicy.Load(ctx, db, other.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !q.AllowsOrganization("192.0.2.1") {
			t.Error("another organization's ranges leaked into this one")
		}
		// A study of another organization cannot be given ranges here.
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			return netpolicy.Replace(ctx, tx, other.ID, study.ID, prefixes(t, "10.0.0.0/8"))
		})
		if err == nil {
			t.Error("ranges stored for a study of another organization")
		}
		// Lifting the restriction.
		err = db.InTx(ctx, func(tx *sql.Tx) error { return netpolicy.Replace(ctx, tx, org.ID, study.ID, nil) })
		if err != nil {
			t.Fatal(err)
		}
		if p, _ := netpolicy.Load(ctx, db, org.ID); len(p.Study(study.ID)) != 0 {
			t.Errorf("study ranges after lifting: %v", p.Study(study.ID))
		}
	})
}
