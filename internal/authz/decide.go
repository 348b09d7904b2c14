package authz

import "slices"

// Action is something a person asks to do.
type Action string

const (
	StudyCreate Action = "study.create"
	StudyRead   Action = "study.read"
	SiteCreate  Action = "site.create"
	SiteRead    Action = "site.read"
	AuditRead   Action = "audit.read"
	// MemberInvite gives a person a role in the organization.
	MemberInvite Action = "member.invite"
	// NetworkManage sets the address ranges an organization or a study may
	// be reached from (ACL-07).
	NetworkManage Action = "network.manage"
)

// Subject is the person asking, with the roles they hold in the
// organization the request is about.
type Subject struct {
	AccountID   string
	OrgID       string
	Assignments []Assignment
}

// Resource is what an action is about. StudyID and SiteID narrow it; a
// resource of a site names its study too.
type Resource struct {
	OrgID   string
	StudyID string
	SiteID  string
}

// Decision is the answer of Decide, with the reason for the log.
type Decision struct {
	Allow  bool
	Reason string
}

// permissions lists what each built-in role may do within its scope.
var permissions = map[Role][]Action{
	OrgAdmin:         {StudyCreate, StudyRead, SiteCreate, SiteRead, AuditRead, MemberInvite, NetworkManage},
	OrgManager:       {StudyRead, SiteRead, MemberInvite},
	StudyAdmin:       {StudyRead, SiteCreate, SiteRead, NetworkManage},
	DataManager:      {StudyRead, SiteRead},
	SiteInvestigator: {StudyRead, SiteRead},
	Monitor:          {StudyRead, SiteRead, AuditRead},
	CareProvider:     {StudyRead, SiteRead},
	Participant:      {},
}

// Decide answers whether subject may take action on resource. It denies by
// default (ACL-01): only an assignment in the resource's organization whose
// scope covers the resource and whose role holds the action allows.
func Decide(s Subject, a Action, r Resource) Decision {
	if s.AccountID == "" {
		return Decision{Reason: "no signed-in account"}
	}
	if r.OrgID == "" || s.OrgID != r.OrgID {
		return Decision{Reason: "resource outside the subject's organization"}
	}
	for _, as := range s.Assignments {
		if as.OrgID != r.OrgID || as.AccountID != s.AccountID {
			continue
		}
		if !slices.Contains(permissions[as.Role], a) {
			continue
		}
		if covers(as, a, r) {
			return Decision{Allow: true, Reason: string(as.Role) + " at " + as.Level().String() + " level"}
		}
	}
	return Decision{Reason: "no role grants " + string(a) + " here"}
}

// covers reports whether an assignment's scope reaches the resource. A
// site-level assignment reaches its own site, and its study only to read
// the study itself, never the study's other sites.
func covers(as Assignment, a Action, r Resource) bool {
	switch as.Level() {
	case LevelOrg:
		return true
	case LevelStudy:
		return r.StudyID != "" && as.StudyID == r.StudyID
	case LevelSite:
		if r.SiteID != "" {
			return as.SiteID == r.SiteID
		}
		return a == StudyRead && r.StudyID != "" && as.StudyID == r.StudyID
	}
	return false
}

// CanGrant reports whether the subject may give assignment a: it must be
// allowed to invite there, and hold every permission of the role at the
// assignment's scope itself, so no one grants more than they have.
func CanGrant(s Subject, a Assignment) bool {
	r := Resource{OrgID: a.OrgID, StudyID: a.StudyID, SiteID: a.SiteID}
	if !Decide(s, MemberInvite, Resource{OrgID: a.OrgID}).Allow {
		return false
	}
	for _, act := range permissions[a.Role] {
		rr := r
		if act == StudyCreate || act == MemberInvite || act == AuditRead {
			rr = Resource{OrgID: a.OrgID, StudyID: a.StudyID}
		}
		if !Decide(s, act, rr).Allow {
			return false
		}
	}
	return true
}
