package authz

import "testing"

func TestACL01_DecideDeniesByDefault(t *testing.T) {
	org, study, site, otherSite := "org1", "study1", "site1", "site2"
	r := func(study, site string) Resource { return Resource{OrgID: org, StudyID: study, SiteID: site} }
	as := func(role Role, study, site string) Subject {
		return Subject{AccountID: "acc", OrgID: org, Assignments: []Assignment{{OrgID: org, AccountID: "acc", Role: role, StudyID: study, SiteID: site}}}
	}
	for _, tc := range []struct {
		name  string
		subj  Subject
		act   Action
		res   Resource
		allow bool
	}{
		{"nobody", Subject{}, StudyRead, r(study, ""), false},
		{"no roles", Subject{AccountID: "acc", OrgID: org}, StudyRead, r(study, ""), false},
		{"org admin creates study", as(OrgAdmin, "", ""), StudyCreate, r("", ""), true},
		{"org admin other org", Subject{AccountID: "acc", OrgID: org, Assignments: []Assignment{{OrgID: org, AccountID: "acc", Role: OrgAdmin}}}, StudyRead, Resource{OrgID: "org2", StudyID: "s"}, false},
		{"assignment of other org", Subject{AccountID: "acc", OrgID: "org2", Assignments: []Assignment{{OrgID: org, AccountID: "acc", Role: OrgAdmin}}}, StudyRead, Resource{OrgID: "org2", StudyID: "s"}, false},
		{"study admin creates site", as(StudyAdmin, study, ""), SiteCreate, r(study, ""), true},
		{"study admin other study", as(StudyAdmin, study, ""), SiteCreate, r("study2", ""), false},
		{"study admin cannot create study", as(StudyAdmin, study, ""), StudyCreate, r("", ""), false},
		{"investigator own site", as(SiteInvestigator, study, site), SiteRead, r(study, site), true},
		{"investigator other site", as(SiteInvestigator, study, site), SiteRead, r(study, otherSite), false},
		{"investigator reads own study", as(SiteInvestigator, study, site), StudyRead, r(study, ""), true},
		{"investigator cannot create site", as(SiteInvestigator, study, site), SiteCreate, r(study, ""), false},
		{"participant reads nothing", as(Participant, study, site), SiteRead, r(study, site), false},
		{"monitor at study reads all sites", as(Monitor, study, ""), SiteRead, r(study, otherSite), true},
		{"someone else's assignment", Subject{AccountID: "acc", OrgID: org, Assignments: []Assignment{{OrgID: org, AccountID: "other", Role: OrgAdmin}}}, StudyRead, r(study, ""), false},
	} {
		d := Decide(tc.subj, tc.act, tc.res)
		if d.Allow != tc.allow {
			t.Errorf("%s: Decide = %+v, want allow=%v", tc.name, d, tc.allow)
		}
		if d.Reason == "" {
			t.Errorf("%s: decision without reason", tc.name)
		}
	}
}

func TestParseRoleKnowsTheBuiltinRoles(t *testing.T) {
	want := []string{"org-admin", "org-manager", "study-admin", "data-manager", "site-investigator", "monitor", "care-provider", "participant"}
	got := BuiltinRoles()
	if len(got) != len(want) {
		t.Fatalf("roles = %v", got)
	}
	for i, w := range want {
		if string(got[i]) != w {
			t.Errorf("role %d = %s, want %s", i, got[i], w)
		}
		if _, err := ParseRole(w); err != nil {
			t.Errorf("ParseRole(%s): %v", w, err)
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error("ParseRole(root) accepted")
	}
}
