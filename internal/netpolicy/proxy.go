package netpolicy

import (
	"net"
	"net/netip"
	"strings"

	"github.com/custodia/custodia/internal/errs"
)

// ParseTrustedProxies reads the --trusted-proxy setting: a comma-separated
// list of CIDR ranges or single addresses of the reverse proxies in front
// of the server. An empty setting trusts no proxy. A range that covers
// every address (/0) is refused: trusting it would let any client choose
// its own address by sending X-Forwarded-For.
func ParseTrustedProxies(setting string) ([]netip.Prefix, error) {
	if strings.TrimSpace(setting) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, s := range strings.Split(setting, ",") {
		p, err := parseRange(s)
		if err != nil {
			return nil, errs.E(errs.Invalid, "--trusted-proxy %q: %s", clip(strings.TrimSpace(s)), err.Error())
		}
		if p.Bits() == 0 {
			return nil, errs.E(errs.Invalid, "--trusted-proxy %q: trusting every address would let any client name its own address; list the proxies' addresses", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// ClientAddr tells the address of the client behind a request. remoteAddr
// is the connection's peer ("host:port"), forwardedFor the values of the
// request's X-Forwarded-For headers in order. When no proxy is trusted, or
// the peer is not a trusted proxy, the peer is the client and the header is
// ignored: anyone can write it. Otherwise the header is read from the right,
// each hop having been appended by the proxy before it, and the first
// address that is not a trusted proxy is the client. A hop that cannot be
// read ends the walk at the trusted proxy that passed it on, since nothing
// to its left can be believed; so does a header of trusted proxies only.
func ClientAddr(remoteAddr string, forwardedFor []string, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	if len(trusted) == 0 {
		return host
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !contains(trusted, peer) {
		return host
	}
	closest := peer.Unmap().WithZone("")
	for i := len(forwardedFor) - 1; i >= 0; i-- {
		hops := strings.Split(forwardedFor[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			hop, ok := parseHop(hops[j])
			if !ok {
				return closest.String()
			}
			if !contains(trusted, hop) {
				return hop.String()
			}
			closest = hop
		}
	}
	return closest.String()
}

// parseHop reads one X-Forwarded-For entry: an address, optionally with a
// port ("192.0.2.1:4711", "[2001:db8::1]:4711") or in brackets.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
				return netip.Addr{}, false
			}
			if a, err = netip.ParseAddr(s[1 : len(s)-1]); err != nil {
				return netip.Addr{}, false
			}
		} else {
			a = ap.Addr()
		}
	}
	return a.Unmap().WithZone(""), true
}
