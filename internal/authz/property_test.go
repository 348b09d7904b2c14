package authz_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
)

// The reference model below restates the rules of decide.go in the
// plainest terms, without sharing any of its code: a table of what each
// role may do, and a small world of two organizations, each with two
// studies of two sites, in which "reaches" is spelled out by membership.

// grants is the role → actions table, as the roles are documented.
var grants = map[authz.Role]string{
	authz.OrgAdmin: "study.create study.read site.create site.read audit.read member.invite network.manage" +
		" participant.enrol participant.read identity.reveal identity.erase participant.delete decrypt.grant" +
		" member.read role.manage care.assign visibility.manage key.manage retention.manage subject.export",
	authz.OrgManager:       "study.read site.read member.invite member.read",
	authz.StudyAdmin:       "study.read site.create site.read network.manage decrypt.grant care.assign visibility.manage",
	authz.DataManager:      "study.read site.read participant.enrol participant.read",
	authz.SiteInvestigator: "study.read site.read participant.enrol participant.read identity.reveal",
	authz.Monitor:          "study.read site.read audit.read participant.read",
	authz.CareProvider:     "study.read site.read participant.read",
	authz.Participant:      "participant.read",
}

// throughRelation names the roles that reach participants only through a
// relation (ACL-05), and which: for them every action but reading the
// study and its sites needs a resource naming a participant related to the
// subject in that way.
var throughRelation = map[authz.Role]authz.RelationKind{
	authz.CareProvider: authz.RelationCare,
	authz.Participant:  authz.RelationSelf,
}

func granted(r authz.Role, a authz.Action) bool {
	return slices.Contains(strings.Fields(grants[r]), string(a))
}

// grantedBy is what one assignment grants: a built-in role's row of the
// table, whatever the assignment carries; otherwise, for an assignment of
// a custom role (ACL-03), the permission set it carries; for anything else
// nothing.
func grantedBy(as authz.Assignment, a authz.Action) bool {
	if _, builtin := grants[as.Role]; builtin {
		return granted(as.Role, a)
	}
	return as.CustomRoleID != "" && slices.Contains(as.Permissions, a)
}

// related answers the relation rule for one assignment.
func related(s authz.Subject, as authz.Assignment, a authz.Action, r authz.Resource) bool {
	kind, scoped := throughRelation[as.Role]
	if !scoped || a == authz.StudyRead || a == authz.SiteRead {
		return true
	}
	for _, rel := range s.Relations {
		if r.ParticipantID != "" && rel.ParticipantID == r.ParticipantID && rel.Kind == kind &&
			rel.OrgID == r.OrgID && rel.AccountID == s.AccountID {
			return true
		}
	}
	return false
}

var actions = []authz.Action{
	authz.StudyCreate, authz.StudyRead, authz.SiteCreate, authz.SiteRead,
	authz.AuditRead, authz.MemberInvite, authz.NetworkManage,
	authz.ParticipantEnrol, authz.ParticipantRead, authz.IdentityReveal, authz.IdentityErase, authz.ParticipantDelete, authz.DecryptGrant,
	authz.MemberRead, authz.RoleManage, authz.CareAssign, authz.VisibilityManage, authz.KeyManage,
	authz.RetentionManage, authz.SubjectExport,
	"nobody.holds", // an action no role holds
}

// The world: organization o, its studies o/s, their sites o/s/x.
var (
	worldOrgs    = []string{"o1", "o2"}
	worldStudies = func(org string) []string { return []string{org + "-s1", org + "-s2"} }
	worldSites   = func(study string) []string { return []string{study + "-x1", study + "-x2"} }
)

// reaches answers, for one assignment, whether its scope takes in the
// resource for the action: an organization takes in all of itself; a study
// takes in itself and its sites; a site takes in itself, and lets its
// holder read the study it belongs to, but nothing else of that study.
func reaches(as authz.Assignment, a authz.Action, r authz.Resource) bool {
	if as.OrgID != r.OrgID {
		return false
	}
	switch {
	case as.SiteID != "":
		if r.SiteID == as.SiteID {
			return true
		}
		return r.SiteID == "" && a == authz.StudyRead && r.StudyID == as.StudyID
	case as.StudyID != "":
		return r.StudyID == as.StudyID
	default:
		return true
	}
}

// reference is the whole decision: signed in, same organization, and some
// assignment of the subject's own that grants the action and reaches.
func reference(s authz.Subject, a authz.Action, r authz.Resource) bool {
	if s.AccountID == "" || r.OrgID == "" || s.OrgID != r.OrgID {
		return false
	}
	for _, as := range s.Assignments {
		if as.AccountID == s.AccountID && grantedBy(as, a) && reaches(as, a, r) && related(s, as, a, r) {
			return true
		}
	}
	return false
}

// worldParticipants are the participants a resource may name and a subject
// be related to; which site they belong to does not matter to the rule.
var worldParticipants = []string{"p1", "p2", "p3"}

// randomCustom gives an assignment a custom role: a random permission set
// (possibly empty, possibly with an action no role has).
func randomCustom(rng *rand.Rand, as authz.Assignment) authz.Assignment {
	as.Role = authz.Role(pick(rng, []string{"coordinator", "auditor-lite", "reader"}))
	as.CustomRoleID = "custom-" + string(as.Role)
	for _, a := range actions {
		if rng.IntN(3) == 0 {
			as.Permissions = append(as.Permissions, a)
		}
	}
	return as
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// randomScope returns an organization, and a study and site of it, one of
// them left out at random: a scope at organization, study or site level.
func randomScope(rng *rand.Rand) (org, study, site string) {
	org = pick(rng, worldOrgs)
	switch rng.IntN(3) {
	case 0:
		return org, "", ""
	case 1:
		return org, pick(rng, worldStudies(org)), ""
	}
	study = pick(rng, worldStudies(org))
	return org, study, pick(rng, worldSites(study))
}

func randomSubject(rng *rand.Rand) authz.Subject {
	roles := append(authz.BuiltinRoles(), "auditor") // and one role that does not exist
	s := authz.Subject{AccountID: "me", OrgID: pick(rng, worldOrgs)}
	switch rng.IntN(20) {
	case 0:
		s.AccountID = "" // not signed in
	case 1:
		s.OrgID = "" // no organization named
	}
	for range rng.IntN(4) {
		org, study, site := randomScope(rng)
		if rng.IntN(4) > 0 {
			org = s.OrgID // mostly in the subject's organization
			if study != "" {
				study = pick(rng, worldStudies(org))
			}
			if site != "" {
				site = pick(rng, worldSites(study))
			}
		}
		owner := s.AccountID
		if rng.IntN(10) == 0 {
			owner = "someone-else"
		}
		as := authz.Assignment{
			ID: fmt.Sprint(len(s.Assignments)), OrgID: org, AccountID: owner,
			Role: pick(rng, roles), StudyID: study, SiteID: site,
		}
		switch rng.IntN(6) {
		case 0:
			as = randomCustom(rng, as)
		case 1:
			// A built-in role that carries a permission set anyway: the
			// built-in table must win.
			as.CustomRoleID, as.Permissions = "forged", []authz.Action{pick(rng, actions)}
		case 2:
			// A custom role's permissions without the role's id: nothing.
			as.Role, as.Permissions = "unlinked", []authz.Action{pick(rng, actions)}
		}
		s.Assignments = append(s.Assignments, as)
	}
	for range rng.IntN(3) {
		rel := authz.Relation{OrgID: s.OrgID, AccountID: s.AccountID, ParticipantID: pick(rng, worldParticipants),
			Kind: pick(rng, []authz.RelationKind{authz.RelationCare, authz.RelationSelf})}
		switch rng.IntN(10) {
		case 0:
			rel.OrgID = pick(rng, worldOrgs)
		case 1:
			rel.AccountID = "someone-else"
		}
		s.Relations = append(s.Relations, rel)
	}
	return s
}

func randomResource(rng *rand.Rand, s authz.Subject) authz.Resource {
	if rng.IntN(30) == 0 {
		return authz.Resource{}
	}
	org, study, site := randomScope(rng)
	if s.OrgID != "" && rng.IntN(4) > 0 {
		org = s.OrgID
		if study != "" {
			study = pick(rng, worldStudies(org))
		}
		if site != "" {
			site = pick(rng, worldSites(study))
		}
	}
	// Lean towards the subject's own scopes, where the rules are subtle.
	if len(s.Assignments) > 0 && rng.IntN(2) == 0 {
		as := pick(rng, s.Assignments)
		if as.OrgID == org {
			switch rng.IntN(3) {
			case 0:
				study, site = as.StudyID, as.SiteID
			case 1:
				study, site = as.StudyID, ""
			default:
				if as.StudyID != "" {
					study, site = as.StudyID, pick(rng, worldSites(as.StudyID))
				}
			}
		}
	}
	r := authz.Resource{OrgID: org, StudyID: study, SiteID: site}
	switch {
	case site == "" || rng.IntN(3) == 0:
	case len(s.Relations) > 0 && rng.IntN(3) > 0:
		r.ParticipantID = pick(rng, s.Relations).ParticipantID
	default:
		r.ParticipantID = pick(rng, worldParticipants)
	}
	return r
}

func TestACL01_DecideMatchesReferenceModel(t *testing.T) {
	const cases = 50_000
	const seed = 20260701
	rng := rand.New(rand.NewPCG(seed, seed))
	var allowed, denied, viaRelation, viaCustom int
	byRole := map[authz.Role]int{}
	for i := range cases {
		s := randomSubject(rng)
		a := pick(rng, actions)
		if rng.IntN(4) == 0 {
			a = authz.ParticipantRead // where relations decide (ACL-05)
		}
		r := randomResource(rng, s)
		want := reference(s, a, r)
		d := authz.Decide(s, a, r)
		if d.Allow != want {
			t.Fatalf("case %d (seed %d): Decide(%+v, %s, %+v) = %+v; reference model says allow=%v",
				i, seed, s, a, r, d, want)
		}
		if d.Reason == "" {
			t.Fatalf("case %d: decision without a reason", i)
		}
		if want {
			allowed++
			for _, as := range s.Assignments {
				if as.AccountID == s.AccountID && grantedBy(as, a) && reaches(as, a, r) && related(s, as, a, r) {
					byRole[as.Role]++
					if _, scoped := throughRelation[as.Role]; scoped && a != authz.StudyRead && a != authz.SiteRead {
						viaRelation++
					}
					if as.CustomRoleID != "" && !slices.Contains(authz.BuiltinRoles(), as.Role) {
						viaCustom++
					}
					break
				}
			}
		} else {
			denied++
		}
	}
	// The generator must exercise both answers, and allows through every
	// role that holds anything.
	if allowed < cases/10 || denied < cases/10 {
		t.Errorf("%d allowed, %d denied of %d: the generator is lopsided", allowed, denied, cases)
	}
	for role, g := range grants {
		if g != "" && byRole[role] == 0 {
			t.Errorf("no case was allowed through role %s", role)
		}
	}
	if viaRelation < 50 || viaCustom < 500 {
		t.Errorf("%d allows through a relation and %d through a custom role: the generator misses them", viaRelation, viaCustom)
	}
	t.Logf("%d cases: %d allowed, %d denied; allows by role %v", cases, allowed, denied, byRole)
}

// TestACL01_ReferenceModelCoversEveryRoleAndAction keeps the reference table
// honest: it names every built-in role, and every action is held by
// someone or deliberately by no one.
func TestACL01_ReferenceModelCoversEveryRoleAndAction(t *testing.T) {
	for _, r := range authz.BuiltinRoles() {
		if _, ok := grants[r]; !ok {
			t.Errorf("reference model lacks role %s", r)
		}
	}
	if len(grants) != len(authz.BuiltinRoles()) {
		t.Errorf("reference model has %d roles, authz %d", len(grants), len(authz.BuiltinRoles()))
	}
	for _, a := range actions[:len(actions)-1] {
		held := false
		for r := range grants {
			held = held || granted(r, a)
		}
		if !held {
			t.Errorf("action %s is held by no role in the reference model", a)
		}
	}
}

// TestACL01_DecideWithinMatchesItsWorld checks the listing question
// against the world: the subject may take the action within a scope
// exactly when Decide allows it on the scope or on one of the world's
// studies or sites inside it, named without a participant. And study.list
// is every member's, at organization level only.
func TestACL01_DecideWithinMatchesItsWorld(t *testing.T) {
	const cases = 20_000
	rng := rand.New(rand.NewPCG(20261206, 1))
	var allowed int
	for i := range cases {
		s := randomSubject(rng)
		a := pick(rng, actions)
		org, study, site := randomScope(rng)
		scope := authz.Resource{OrgID: org, StudyID: study, SiteID: site}
		want := authz.Decide(s, a, scope).Allow
		for _, st := range worldStudies(org) {
			for _, x := range append([]string{""}, worldSites(st)...) {
				in := authz.Resource{OrgID: org, StudyID: st, SiteID: x}
				if (study == "" || study == st) && (site == "" || site == x) && authz.Decide(s, a, in).Allow {
					want = true
				}
			}
		}
		if got := authz.DecideWithin(s, a, scope).Allow; got != want {
			t.Fatalf("case %d: DecideWithin(%+v, %s, %+v) = %v, want %v", i, s, a, scope, got, want)
		}
		if want {
			allowed++
		}
		member := s.AccountID != "" && s.OrgID == org && slices.ContainsFunc(s.Assignments, func(as authz.Assignment) bool {
			return as.OrgID == org && as.AccountID == s.AccountID
		})
		if got := authz.Decide(s, authz.StudyList, scope).Allow; got != (member && study == "" && site == "") {
			t.Fatalf("case %d: study.list for %+v on %+v = %v", i, s, scope, got)
		}
	}
	if allowed < cases/20 {
		t.Errorf("only %d of %d allowed: the generator misses the listing cases", allowed, cases)
	}
}
