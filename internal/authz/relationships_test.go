package authz

import "testing"

// A care provider reaches only the participants assigned to them and a
// participant only their own record; both still read their study and site
// (ACL-05). Other roles are not bound by relations.
func TestACL05_RelationshipScopedRolesReachOnlyRelatedParticipants(t *testing.T) {
	org, study, site := "org1", "s1", "x1"
	carer := Subject{AccountID: "acc", OrgID: org,
		Assignments: []Assignment{{OrgID: org, AccountID: "acc", Role: CareProvider, StudyID: study}},
		Relations:   []Relation{{OrgID: org, AccountID: "acc", ParticipantID: "p1", Kind: RelationCare}}}
	patient := Subject{AccountID: "acc", OrgID: org,
		Assignments: []Assignment{{OrgID: org, AccountID: "acc", Role: Participant, StudyID: study, SiteID: site}},
		Relations:   []Relation{{OrgID: org, AccountID: "acc", ParticipantID: "p1", Kind: RelationSelf}}}
	manager := Subject{AccountID: "acc", OrgID: org,
		Assignments: []Assignment{{OrgID: org, AccountID: "acc", Role: DataManager, StudyID: study}}}
	p := func(id string) Resource { return Resource{OrgID: org, StudyID: study, SiteID: site, ParticipantID: id} }
	for _, tc := range []struct {
		name string
		s    Subject
		a    Action
		r    Resource
		want bool
	}{
		{"carer reads assigned participant", carer, ParticipantRead, p("p1"), true},
		{"carer reads another participant", carer, ParticipantRead, p("p2"), false},
		{"carer lists the site", carer, ParticipantRead, p(""), false},
		{"carer reads the site", carer, SiteRead, p(""), true},
		{"carer's relation of the wrong kind", withRelation(carer, RelationSelf), ParticipantRead, p("p3"), false},
		{"carer's relation in another organization", withOrgRelation(carer, "org2"), ParticipantRead, p("p4"), false},
		{"carer's relation of someone else", withOwner(carer, "other"), ParticipantRead, p("p5"), false},
		{"carer outside the scope", carer, ParticipantRead, Resource{OrgID: org, StudyID: "s2", SiteID: "y", ParticipantID: "p1"}, false},
		{"patient reads own record", patient, ParticipantRead, p("p1"), true},
		{"patient reads another record", patient, ParticipantRead, p("p2"), false},
		{"patient as carer", Subject{AccountID: "acc", OrgID: org, Assignments: patient.Assignments,
			Relations: []Relation{{OrgID: org, AccountID: "acc", ParticipantID: "p2", Kind: RelationCare}}}, ParticipantRead, p("p2"), false},
		{"data manager reads any participant of the study", manager, ParticipantRead, p("p2"), true},
		{"carer cannot enrol even a related participant", carer, ParticipantEnrol, p("p1"), false},
	} {
		if got := Decide(tc.s, tc.a, tc.r).Allow; got != tc.want {
			t.Errorf("%s: allow = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func withRelation(s Subject, k RelationKind) Subject {
	s.Relations = append(s.Relations[:len(s.Relations):len(s.Relations)], Relation{OrgID: s.OrgID, AccountID: s.AccountID, ParticipantID: "p3", Kind: k})
	return s
}

func withOrgRelation(s Subject, org string) Subject {
	s.Relations = append(s.Relations[:len(s.Relations):len(s.Relations)], Relation{OrgID: org, AccountID: s.AccountID, ParticipantID: "p4", Kind: RelationCare})
	return s
}

func withOwner(s Subject, owner string) Subject {
	s.Relations = append(s.Relations[:len(s.Relations):len(s.Relations)], Relation{OrgID: s.OrgID, AccountID: owner, ParticipantID: "p5", Kind: RelationCare})
	return s
}
