package authz

import (
	"slices"
	"testing"
)

// A field hidden from a role is absent from what that role sees; a person
// sees it through any role that lets them read the resource and does not
// hide it, never through a role held elsewhere (ACL-04).
func TestACL04_VisibleFieldsDropsFieldsHiddenFromEveryGrantingRole(t *testing.T) {
	org, study, site := "org1", "s1", "x1"
	r := Resource{OrgID: org, StudyID: study, SiteID: site}
	rules := FieldRules{"identity.name": {Monitor, SiteInvestigator}, "visit.weight": {Monitor}}
	fields := []string{"identity.name", "identity.email", "visit.weight"}
	as := func(role Role, study, site string) Assignment {
		return Assignment{OrgID: org, AccountID: "acc", Role: role, StudyID: study, SiteID: site}
	}
	for _, tc := range []struct {
		name string
		as   []Assignment
		want []string
	}{
		{"monitor", []Assignment{as(Monitor, study, "")}, []string{"identity.email"}},
		{"investigator", []Assignment{as(SiteInvestigator, study, site)}, []string{"identity.email", "visit.weight"}},
		{"monitor and investigator here", []Assignment{as(Monitor, study, ""), as(SiteInvestigator, study, site)}, []string{"identity.email", "visit.weight"}},
		{"monitor here, data manager elsewhere", []Assignment{as(Monitor, study, ""), as(DataManager, "s2", "")}, []string{"identity.email"}},
		{"monitor here, participant without relation", []Assignment{as(Monitor, study, ""), as(Participant, study, site)}, []string{"identity.email"}},
		{"org admin", []Assignment{as(OrgAdmin, "", "")}, fields},
		{"no read at all", []Assignment{as(StudyAdmin, study, "")}, []string{}},
	} {
		s := Subject{AccountID: "acc", OrgID: org, Assignments: tc.as}
		got := VisibleFields(s, ParticipantRead, r, rules, fields)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: visible %v, want %v", tc.name, got, tc.want)
		}
		m := map[string]int{}
		for i, f := range fields {
			m[f] = i
		}
		FilterFields(s, ParticipantRead, r, rules, m)
		for _, f := range fields {
			if _, ok := m[f]; ok != slices.Contains(tc.want, f) {
				t.Errorf("%s: FilterFields kept %s = %v", tc.name, f, ok)
			}
		}
	}
}

func TestACL04_CheckFieldRulesRefusesBadRules(t *testing.T) {
	known := func(r Role) bool { return r.IsBuiltin() || r == "coordinator" }
	good, err := CheckFieldRules(FieldRules{"identity.name": {Monitor, "coordinator"}, "visit.note": {}}, known)
	if err != nil {
		t.Fatal(err)
	}
	if len(good) != 1 || !slices.IsSorted(good["identity.name"]) {
		t.Errorf("rules %v: want the field hidden from no role dropped, roles sorted", good)
	}
	for name, bad := range map[string]FieldRules{
		"no form":       {"name": {Monitor}},
		"empty field":   {"identity.": {Monitor}},
		"upper case":    {"Identity.name": {Monitor}},
		"two dots":      {"a.b.c": {Monitor}},
		"unknown role":  {"identity.name": {"root"}},
		"role twice":    {"identity.name": {Monitor, Monitor}},
		"bad character": {"identity.na-me": {Monitor}},
	} {
		if _, err := CheckFieldRules(bad, known); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
