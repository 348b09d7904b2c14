package authz

import (
	"slices"
	"testing"
)

func subject(as ...Assignment) Subject {
	for i := range as {
		as[i].OrgID, as[i].AccountID = "org1", "acc"
	}
	return Subject{AccountID: "acc", OrgID: "org1", Assignments: as}
}

// A custom role's definition is checked: a free, well-formed name, known
// levels and permissions, nothing twice (ACL-03).
func TestACL03_CheckCustomRoleRefusesBadDefinitions(t *testing.T) {
	good := CustomRole{Name: "coordinator", Levels: []Level{LevelSite, LevelStudy}, Permissions: []Action{StudyRead, ParticipantEnrol}}
	got, err := CheckCustomRole(good)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(got.Levels) || !slices.IsSorted(got.Permissions) {
		t.Errorf("definition not in a stable order: %+v", got)
	}
	for name, bad := range map[string]CustomRole{
		"built-in name":      {Name: "org-admin", Levels: []Level{LevelOrg}, Permissions: []Action{StudyRead}},
		"upper case":         {Name: "Coordinator", Levels: []Level{LevelOrg}, Permissions: []Action{StudyRead}},
		"too short":          {Name: "c", Levels: []Level{LevelOrg}, Permissions: []Action{StudyRead}},
		"trailing hyphen":    {Name: "coord-", Levels: []Level{LevelOrg}, Permissions: []Action{StudyRead}},
		"too long":           {Name: "a123456789012345678901234567890123456789x", Levels: []Level{LevelOrg}, Permissions: []Action{StudyRead}},
		"no level":           {Name: "coord", Permissions: []Action{StudyRead}},
		"unknown level":      {Name: "coord", Levels: []Level{7}, Permissions: []Action{StudyRead}},
		"level twice":        {Name: "coord", Levels: []Level{LevelOrg, LevelOrg}, Permissions: []Action{StudyRead}},
		"no permission":      {Name: "coord", Levels: []Level{LevelOrg}},
		"unknown permission": {Name: "coord", Levels: []Level{LevelOrg}, Permissions: []Action{"root.everything"}},
		"permission twice":   {Name: "coord", Levels: []Level{LevelOrg}, Permissions: []Action{StudyRead, StudyRead}},
	} {
		if _, err := CheckCustomRole(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Every action some role holds can be put in a custom role, and nothing
// else.
func TestACL03_ActionsAreThoseOfTheBuiltinRoles(t *testing.T) {
	all := Actions()
	for _, p := range permissions {
		for _, a := range p {
			if !slices.Contains(all, a) {
				t.Errorf("%s missing from Actions", a)
			}
		}
	}
	if _, err := ParseAction("nobody.holds"); err == nil {
		t.Error("ParseAction accepted an action no role has")
	}
}

// A built-in role's name always means the built-in role, whatever
// permissions an assignment carries; a custom role grants its permission
// set, and a permission set without a custom role grants nothing.
func TestACL03_PermissionsOfFollowTheRoleNotTheAssignment(t *testing.T) {
	forged := Assignment{Role: Participant, CustomRoleID: "x", Permissions: []Action{AuditRead}}
	if slices.Contains(PermissionsOf(forged), AuditRead) {
		t.Error("a built-in role took the permissions an assignment carried")
	}
	custom := Assignment{Role: "coordinator", CustomRoleID: "x", Permissions: []Action{AuditRead}}
	if !Decide(subject(custom), AuditRead, Resource{OrgID: "org1"}).Allow {
		t.Error("a custom role at organization level does not grant its permission")
	}
	unlinked := Assignment{Role: "coordinator", Permissions: []Action{AuditRead}}
	if Decide(subject(unlinked), AuditRead, Resource{OrgID: "org1"}).Allow {
		t.Error("a permission set without a custom role granted something")
	}
}

// CanGrant is "the granted role's permission set is a subset of the
// granter's at that scope" (ACL-02, ACL-06).
func TestACL02_CanGrantOnlyWhatTheGranterHoldsAtTheScope(t *testing.T) {
	org, study, site := "org1", "s1", "x1"
	at := func(role Role, study, site string) Assignment {
		return Assignment{OrgID: org, Role: role, StudyID: study, SiteID: site}
	}
	coordinator := func(study, site string, perms ...Action) Assignment {
		a := at("coordinator", study, site)
		a.CustomRoleID, a.Permissions = "c1", perms
		return a
	}
	for _, tc := range []struct {
		name    string
		granter Subject
		grant   Assignment
		want    bool
	}{
		{"admin grants monitor", subject(at(OrgAdmin, "", "")), at(Monitor, study, site), true},
		{"manager grants manager", subject(at(OrgManager, "", "")), at(OrgManager, "", ""), true},
		{"manager grants monitor (audit)", subject(at(OrgManager, "", "")), at(Monitor, study, ""), false},
		{"manager grants data manager (clinical)", subject(at(OrgManager, "", "")), at(DataManager, study, site), false},
		{"manager grants care provider (clinical via relation)", subject(at(OrgManager, "", "")), at(CareProvider, study, ""), false},
		{"manager grants admin", subject(at(OrgManager, "", "")), at(OrgAdmin, "", ""), false},
		{"manager grants people reader", subject(at(OrgManager, "", "")), coordinator("", "", MemberRead, StudyRead), true},
		{"study admin cannot invite", subject(at(StudyAdmin, study, "")), at(CareProvider, study, ""), false},
		{"study coordinator grants within study", subject(coordinator(study, "", MemberInvite, ParticipantRead, StudyRead, SiteRead)), at(DataManager, study, site), false},
		{"study coordinator grants reader within study", subject(coordinator(study, "", MemberInvite, ParticipantRead, StudyRead, SiteRead)), coordinator(study, site, ParticipantRead, SiteRead), true},
		{"study coordinator grants at another study", subject(coordinator(study, "", MemberInvite, ParticipantRead, StudyRead, SiteRead)), coordinator("s2", "", ParticipantRead), false},
		{"site coordinator grants the study", subject(coordinator(study, site, MemberInvite, ParticipantRead)), coordinator(study, "", ParticipantRead), false},
		{"site coordinator grants study read at own site", subject(coordinator(study, site, MemberInvite, StudyRead)), coordinator(study, site, StudyRead), true},
		{"care provider's relation does not count", Subject{AccountID: "acc", OrgID: org,
			Assignments: []Assignment{{OrgID: org, AccountID: "acc", Role: CareProvider, StudyID: study}, coordinatorOwned(study)},
			Relations:   []Relation{{OrgID: org, AccountID: "acc", ParticipantID: "p1", Kind: RelationCare}}},
			coordinator(study, site, ParticipantRead), false},
	} {
		for i := range tc.granter.Assignments {
			tc.granter.Assignments[i].AccountID = "acc"
		}
		if got := CanGrant(tc.granter, tc.grant); got != tc.want {
			t.Errorf("%s: CanGrant = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func coordinatorOwned(study string) Assignment {
	return Assignment{OrgID: "org1", AccountID: "acc", Role: "inviter", StudyID: study, CustomRoleID: "i", Permissions: []Action{MemberInvite}}
}
