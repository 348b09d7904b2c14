// Package netpolicy owns network restriction (ACL-07): the address ranges
// from which an organization, or one of its studies, may be reached, and
// the rule that tells a request's client address from the addresses of the
// reverse proxies in front of the server.
//
// It promises that a scope with ranges allows only addresses inside one of
// them, that an address which cannot be read is never allowed into a
// restricted scope, and that a range is stored only in canonical form after
// it was checked. The gate consults a Policy before any data is read.
package netpolicy

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/sqldb"
)

// Refusal is the reason recorded on the audit trail when a request is
// refused because of where it comes from.
const Refusal = "network"

// MaxRanges bounds the ranges of one organization or study.
const MaxRanges = 64

const example = "a CIDR range such as 10.0.0.0/8 or 2001:db8::/32, or a single address"

// ParseRanges checks the ranges a person gives for a scope and returns them
// deduplicated and in canonical order. A single address stands for itself
// (/32 or /128). A range with host bits set (10.1.2.3/8) is refused rather
// than guessed at, and so are IPv4-mapped IPv6 forms, which hide an IPv4
// range behind IPv6 notation. An empty list means no restriction.
func ParseRanges(list []string) ([]netip.Prefix, error) {
	if len(list) > MaxRanges {
		return nil, errs.E(errs.Invalid, "at most %d ranges may be given, not %d", MaxRanges, len(list))
	}
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		p, err := parseRange(s)
		if err != nil {
			return nil, errs.E(errs.Invalid, "range %d (%q): %s", i+1, clip(s), err.Error())
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefixes)
	return out, nil
}

type reason string

func (r reason) Error() string { return string(r) }

func parseRange(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, reason("empty; want " + example)
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, reason("not an address or CIDR range; want " + example)
		}
		if a.Is4In6() {
			return netip.Prefix{}, reason("an IPv4-mapped IPv6 address; write it as " + a.Unmap().String())
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, reason("not a CIDR range; want " + example)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, reason("an IPv4-mapped IPv6 range; write IPv4 ranges in IPv4 form")
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, reason("has bits set beyond the prefix length; did you mean " + m.String() + "?")
	}
	return p, nil
}

// clip shortens a value quoted back in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// Allows reports whether addr lies in one of ranges. No ranges means no
// restriction. An address that does not parse is outside every range.
func Allows(ranges []netip.Prefix, addr string) bool {
	if len(ranges) == 0 {
		return true
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	return contains(ranges, a)
}

func contains(ranges []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range ranges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Policy is the network restriction of one organization and its studies.
// The zero Policy restricts nothing.
type Policy struct {
	org   []netip.Prefix
	study map[string][]netip.Prefix
}

// Organization returns the organization's ranges.
func (p Policy) Organization() []netip.Prefix { return slices.Clone(p.org) }

// Study returns the ranges of one study (not including its organization's).
func (p Policy) Study(studyID string) []netip.Prefix { return slices.Clone(p.study[studyID]) }

// AllowsOrganization reports whether addr may reach the organization.
func (p Policy) AllowsOrganization(addr string) bool { return Allows(p.org, addr) }

// AllowsStudy reports whether addr may reach the study; "" names no study
// and is always allowed. The organization's ranges are checked separately,
// by AllowsOrganization, before any study is named.
func (p Policy) AllowsStudy(studyID, addr string) bool {
	if studyID == "" {
		return true
	}
	return Allows(p.study[studyID], addr)
}

// Load reads the ranges of an organization and of all its studies.
func Load(ctx context.Context, q sqldb.Querier, orgID string) (Policy, error) {
	rows, err := q.QueryContext(ctx, OrganizationRanges, orgID)
	if err != nil {
		return Policy{}, fmt.Errorf("load network policy: %w", err)
	}
	defer rows.Close()
	var rs []RangeRow
	for rows.Next() {
		var r RangeRow
		if err := rows.Scan(r.Dest()...); err != nil {
			return Policy{}, fmt.Errorf("load network policy: %w", err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return Policy{}, fmt.Errorf("load network policy: %w", err)
	}
	return FromRanges(rs)
}

// OrganizationRanges is the statement that reads the ranges of the
// organization $1 and of all its studies, in the columns of RangeRow, for
// a caller that reads them in a statement of its own making (the gate reads
// them with the requester's roles).
const OrganizationRanges = `SELECT COALESCE(study_id, ''), prefix FROM network_ranges WHERE org_id = $1`

// RangeRow receives a row of OrganizationRanges.
type RangeRow struct{ studyID, prefix string }

// Dest are the scan destinations of the row's columns.
func (r *RangeRow) Dest() []any { return []any{&r.studyID, &r.prefix} }

// FromRanges is the policy of the rows of OrganizationRanges.
func FromRanges(rows []RangeRow) (Policy, error) {
	var p Policy
	for _, row := range rows {
		r, err := netip.ParsePrefix(row.prefix)
		if err != nil {
			// A range that cannot be read must not silently widen access.
			return Policy{}, fmt.Errorf("load network policy: stored range %q: %w", row.prefix, err)
		}
		if row.studyID == "" {
			p.org = append(p.org, r)
			continue
		}
		if p.study == nil {
			p.study = map[string][]netip.Prefix{}
		}
		p.study[row.studyID] = append(p.study[row.studyID], r)
	}
	slices.SortFunc(p.org, comparePrefixes)
	for _, rs := range p.study {
		slices.SortFunc(rs, comparePrefixes)
	}
	return p, nil
}

// Replace sets the ranges of the organization (studyID "") or of one of its
// studies, in tx. The caller has checked the ranges with ParseRanges and
// the requester's right to change them.
func Replace(ctx context.Context, tx sqldb.Tx, orgID, studyID string, ranges []netip.Prefix) error {
	var err error
	if studyID == "" {
		_, err = tx.ExecContext(ctx, `DELETE FROM network_ranges WHERE org_id = $1 AND study_id IS NULL`, orgID)
	} else {
		_, err = tx.ExecContext(ctx, `DELETE FROM network_ranges WHERE org_id = $1 AND study_id = $2`, orgID, studyID)
	}
	if err != nil {
		return fmt.Errorf("replace network ranges: %w", err)
	}
	var study any
	if studyID != "" {
		study = studyID
	}
	now := sqldb.Now()
	for _, r := range ranges {
		if r != r.Masked() || !r.IsValid() {
			return errs.E(errs.Invalid, "range %s is not in canonical form", r)
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO network_ranges (org_id, study_id, prefix, created_at) VALUES ($1, $2, $3, $4)`,
			orgID, study, r.String(), now)
		if err != nil {
			return fmt.Errorf("replace network ranges: %w", err)
		}
	}
	return nil
}

// Describe renders ranges for an audit event (a detail value has a bounded
// length): the list itself when short, otherwise its size, first and last.
func Describe(ranges []netip.Prefix) string {
	if len(ranges) == 0 {
		return "unrestricted"
	}
	parts := make([]string, len(ranges))
	for i, r := range ranges {
		parts[i] = r.String()
	}
	s := strings.Join(parts, " ")
	if len(s) <= 400 {
		return s
	}
	return fmt.Sprintf("%d ranges, %s … %s", len(ranges), parts[0], parts[len(parts)-1])
}
