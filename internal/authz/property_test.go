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
	authz.OrgAdmin:         "study.create study.read site.create site.read audit.read member.invite network.manage",
	authz.OrgManager:       "study.read site.read member.invite",
	authz.StudyAdmin:       "study.read site.create site.read network.manage",
	authz.DataManager:      "study.read site.read",
	authz.SiteInvestigator: "study.read site.read",
	authz.Monitor:          "study.read site.read audit.read",
	authz.CareProvider:     "study.read site.read",
	authz.Participant:      "",
}

func granted(r authz.Role, a authz.Action) bool {
	return slices.Contains(strings.Fields(grants[r]), string(a))
}

var actions = []authz.Action{
	authz.StudyCreate, authz.StudyRead, authz.SiteCreate, authz.SiteRead,
	authz.AuditRead, authz.MemberInvite, authz.NetworkManage,
	"participant.read", // an action no role holds
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
		if as.AccountID == s.AccountID && granted(as.Role, a) && reaches(as, a, r) {
			return true
		}
	}
	return false
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
		s.Assignments = append(s.Assignments, authz.Assignment{
			ID: fmt.Sprint(len(s.Assignments)), OrgID: org, AccountID: owner,
			Role: pick(rng, roles), StudyID: study, SiteID: site,
		})
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
	return authz.Resource{OrgID: org, StudyID: study, SiteID: site}
}

func TestACL01_DecideMatchesReferenceModel(t *testing.T) {
	const cases = 50_000
	const seed = 20260701
	rng := rand.New(rand.NewPCG(seed, seed))
	var allowed, denied int
	byRole := map[authz.Role]int{}
	for i := range cases {
		s := randomSubject(rng)
		a := pick(rng, actions)
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
				if as.AccountID == s.AccountID && granted(as.Role, a) && reaches(as, a, r) {
					byRole[as.Role]++
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
