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
	// SecurityManage sets the organization's security policy (AUTH-09) and
	// lifts the lockout of its members (AUTH-04).
	SecurityManage Action = "security.manage"
	// ParticipantEnrol enrols a participant at a site; ParticipantRead
	// lists and reads participants by pseudonym (CRY-09).
	ParticipantEnrol Action = "participant.enrol"
	ParticipantRead  Action = "participant.read"
	// IdentityReveal re-identifies a participant: shows the identifying
	// data behind a pseudonym (CRY-09, with step-up, ACL-09); its sensitive
	// fields open only under a decrypt grant as well (CRY-06).
	IdentityReveal Action = "identity.reveal"
	// IdentityErase erases a participant's identifying data for good by
	// destroying their key (LIFE-03).
	IdentityErase Action = "identity.erase"
	// ParticipantDelete deletes a participant (LIFE-01): hidden and locked
	// at once, erased with their identity after the retention period.
	ParticipantDelete Action = "participant.delete"
	// DecryptGrant gives and revokes decrypt grants of a study (CRY-06).
	DecryptGrant Action = "decrypt.grant"
	// MemberRead lists the organization's people and their roles (ACL-02).
	MemberRead Action = "member.read"
	// RoleManage defines and deletes the organization's custom roles
	// (ACL-03).
	RoleManage Action = "role.manage"
	// CareAssign assigns care providers to participants (ACL-05).
	CareAssign Action = "care.assign"
	// VisibilityManage sets which fields of a study are hidden from which
	// roles (ACL-04).
	VisibilityManage Action = "visibility.manage"
	// KeyManage requests and approves key operations under dual control
	// (CRY-08): rotation, export of recovery material, change of provider.
	// It is held at organization level only.
	KeyManage Action = "key.manage"
	// StudyList lists the organization's studies. Every member of the
	// organization may ask, whatever their role and its scope; the list
	// then holds only the studies the member may read (study.read). It is
	// held by membership, not by a role's permissions (see allows).
	StudyList Action = "study.list"
	// FormDesign creates a study's forms, saves their drafts, publishes
	// and retires their versions (WEB-05). FormRead reads the forms of a
	// study: their definitions, never a participant's values.
	FormDesign Action = "form.design"
	FormRead   Action = "form.read"
	// EntryWrite saves a participant's values of a form at a visit;
	// EntryRead reads them and their history (WEB-05, ACL-04).
	EntryWrite Action = "entry.write"
	EntryRead  Action = "entry.read"
	// EntryRestore restores a deleted entry, or a deleted participant,
	// within its retention period (LIFE-01).
	EntryRestore Action = "entry.restore"
	// ConsentDesign writes a study's consent documents, publishes their
	// versions and sets the study's consent settings (package consent).
	// ConsentRead reads the documents and the consent status of the
	// participants it reaches; ConsentSign records a participant's consent
	// or withdrawal (their own, or in person at a site); ConsentCountersign
	// countersigns it as the investigator.
	ConsentDesign      Action = "consent.design"
	ConsentRead        Action = "consent.read"
	ConsentSign        Action = "consent.sign"
	ConsentCountersign Action = "consent.countersign"
	// RetentionManage lists the organization's accounts and participants
	// noticed for the purge of inactive data, and places and lifts legal
	// holds that keep them (LIFE-02).
	RetentionManage Action = "retention.manage"
	// SubjectExport exports everything the instance holds about one
	// participant, their own account with it, for a data subject's
	// request (LIFE-02): their identity, entries, consents and signed
	// PDFs, messages and access log.
	SubjectExport Action = "subject.export"
)

// Subject is the person asking, with the roles they hold in the
// organization the request is about.
type Subject struct {
	AccountID   string
	OrgID       string
	Assignments []Assignment
	// Relations are the participants the person is related to (ACL-05):
	// as their care provider or as the participant themselves.
	Relations []Relation
}

// Resource is what an action is about. StudyID and SiteID narrow it; a
// resource of a site names its study too. ParticipantID (a pseudonym) names
// the participant an action on participant data is about, with their study
// and site: a care provider or participant is allowed only for a
// participant they are related to (ACL-05).
type Resource struct {
	OrgID         string
	StudyID       string
	SiteID        string
	ParticipantID string
	// Members are the accounts of the conversation an action is about
	// (conversation.use): only they are allowed (conversations.go).
	Members []string
}

// Decision is the answer of Decide, with the reason for the log.
type Decision struct {
	Allow  bool
	Reason string
}

// permissions lists what each built-in role may do within its scope.
//
// Participants and their identity (CRY-09, ACL-06):
//   - org-admin holds every participant permission, because it may give
//     every role (CanGrant: no one grants more than they hold) and so could
//     take any of them anyway; holding them directly keeps each use on the
//     trail as what it is. It is the one role that erases (LIFE-03): an
//     irreversible act, on the request of the person concerned, taken by
//     the organization that answers for the data. For the same reason it
//     is the one that deletes a participant (participant.delete, LIFE-01):
//     the purge at the end of the retention period erases their identity
//     as erasure does.
//   - site-investigator enrols, lists and re-identifies the participants
//     of their own site: the site is where participants are seen and
//     contacted.
//   - data-manager enrols and lists at their study or site, by pseudonym
//     only; monitor lists by pseudonym only.
//   - the values recorded about participants (entries): site-investigator
//     and data-manager enter and read them where they reach, monitor
//     reads them; study-admin, who designs the forms, does not see them.
//     Those who enter an entry may delete it (it is hidden, and kept for
//     its retention period); only org-admin restores one, and a deleted
//     participant (entry.restore). A participant
//     reads and fills their own survey forms (ePRO) and no other.
//   - study-admin designs the study, its forms included, and gives
//     decrypt grants for it (CRY-06), but sees no participant.
//   - org-manager manages people and their roles and never reaches
//     participants, their identity or the audit trail (ACL-06).
//   - care-provider and participant read participants only through a
//     relation (ACL-05, relationships.go): a care provider those assigned
//     to them, a participant their own record.
//
// Forms (WEB-05): org-admin and study-admin design them (form.design);
// every role that records, reviews or designs a study's data reads them
// (form.read), at a site as well: a site works with its study's forms.
// org-manager, care-provider and participant do not read definitions
// through this permission.
//
// Consent (issue 16): org-admin and study-admin write the consent
// documents and settings (consent.design); those who read participants'
// entries read their consent status (consent.read), and the participant
// their own. The participant signs and withdraws their own consent, a
// site investigator records it in person at their site (consent.sign)
// and is the one who countersigns (consent.countersign); org-admin holds
// both because it grants the site-investigator role.
//
// Retention and data subjects' requests (LIFE-02): org-admin, who answers
// for the organization's data, keeps the purge of inactive data
// (retention.manage) and exports everything about one person on their
// request (subject.export): the one permission that reads a person's
// conversations without being a member, for the person themselves.
//
// Keys (CRY-08): org-admin requests and approves key operations
// (key.manage); a custom role holding key.manage at organization level
// ("key custodian") may too. Two different holders are needed for every
// operation (keys/keyadmin).
//
// People and roles (ACL-02, ACL-03): org-admin and org-manager list the
// members; both assign roles (member.invite), each only roles whose
// permissions they hold themselves (CanGrant). Custom roles are defined by
// org-admin. Study-admin assigns care providers to the participants of
// their study and sets which fields its roles see (ACL-04).
var permissions = map[Role][]Action{
	OrgAdmin: {StudyCreate, StudyRead, SiteCreate, SiteRead, AuditRead, MemberInvite, NetworkManage, SecurityManage,
		ParticipantEnrol, ParticipantRead, IdentityReveal, IdentityErase, ParticipantDelete, DecryptGrant,
		MemberRead, RoleManage, CareAssign, VisibilityManage, KeyManage, FormDesign, FormRead, EntryWrite, EntryRead, EntryRestore,
		ConsentDesign, ConsentRead, ConsentSign, ConsentCountersign, RetentionManage, SubjectExport},
	OrgManager:       {StudyRead, SiteRead, MemberInvite, MemberRead},
	StudyAdmin:       {StudyRead, SiteCreate, SiteRead, NetworkManage, DecryptGrant, CareAssign, VisibilityManage, FormDesign, FormRead, ConsentDesign},
	DataManager:      {StudyRead, SiteRead, ParticipantEnrol, ParticipantRead, FormRead, EntryWrite, EntryRead, ConsentRead},
	SiteInvestigator: {StudyRead, SiteRead, ParticipantEnrol, ParticipantRead, IdentityReveal, FormRead, EntryWrite, EntryRead, ConsentRead, ConsentSign, ConsentCountersign},
	Monitor:          {StudyRead, SiteRead, AuditRead, ParticipantRead, FormRead, EntryRead, ConsentRead},
	CareProvider:     {StudyRead, SiteRead, ParticipantRead},
	Participant:      {ParticipantRead, EntryRead, EntryWrite, ConsentRead, ConsentSign},
}

// Decide answers whether subject may take action on resource. It denies by
// default (ACL-01): only an assignment in the resource's organization whose
// scope covers the resource and whose role (built-in, or custom with the
// permission set it was loaded with) holds the action allows, and for a
// relationship-scoped role only on a related participant (ACL-05).
func Decide(s Subject, a Action, r Resource) Decision {
	if s.AccountID == "" {
		return Decision{Reason: "no signed-in account"}
	}
	if r.OrgID == "" || s.OrgID != r.OrgID {
		return Decision{Reason: "resource outside the subject's organization"}
	}
	for _, as := range s.Assignments {
		if allows(s, as, a, r) {
			return Decision{Allow: true, Reason: string(as.Role) + " at " + as.Level().String() + " level"}
		}
	}
	return Decision{Reason: "no role grants " + string(a) + " here"}
}

// allows reports whether one assignment of s by itself allows a on r.
func allows(s Subject, as Assignment, a Action, r Resource) bool {
	member := s.AccountID != "" && r.OrgID != "" && s.OrgID == r.OrgID &&
		as.OrgID == r.OrgID && as.AccountID == s.AccountID
	if a == StudyList {
		return member && r.StudyID == "" && r.SiteID == "" && r.ParticipantID == ""
	}
	if a == ConversationUse {
		return member && conversationAllows(s, as, r)
	}
	return member && slices.Contains(PermissionsOf(as), a) && covers(as, a, r) && relationAllows(s, as, a, r)
}

// covers reports whether an assignment's scope reaches the resource. A
// site-level assignment reaches its own site, and its study only to read
// the study itself and its forms, never the study's other sites.
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
		return (a == StudyRead || a == FormRead) && r.StudyID != "" && as.StudyID == r.StudyID
	}
	return false
}

// CanGrant reports whether the subject may give (or take away) assignment
// a, whose Permissions a custom role's must carry (ResolveRole). This is
// the one statement of the rule "no one grants more than they hold"
// (ACL-02, ACL-03, ACL-06):
//
//   - the subject holds member.invite at the assignment's scope (its
//     organization, study or site), and
//   - the granted role's permission set is a subset of the subject's at
//     that scope: for every permission of the role, Decide allows the
//     subject that permission on the scope itself, without naming a
//     participant, so a permission the subject holds only through a
//     relation (ACL-05) does not count; a site-level role also reads its
//     study and its forms, so for it study.read and form.read are asked
//     of the study as well.
//
// Because Decide is monotone in scope, holding a permission on the scope
// means holding it on everything within the scope that the assignment
// would reach.
func CanGrant(s Subject, a Assignment) bool {
	scope := Resource{OrgID: a.OrgID, StudyID: a.StudyID, SiteID: a.SiteID}
	if !Decide(s, MemberInvite, scope).Allow {
		return false
	}
	for _, act := range PermissionsOf(a) {
		if !Decide(s, act, scope).Allow {
			return false
		}
		if (act == StudyRead || act == FormRead) && a.Level() == LevelSite && !Decide(s, act, Resource{OrgID: a.OrgID, StudyID: a.StudyID}).Allow {
			return false
		}
	}
	return true
}

// DecideWithin answers whether subject may take action on anything within
// scope: on scope itself, or on a study or site inside it that one of the
// subject's assignments reaches. Work that lists asks it of the list's
// scope before it reads, whether or not the list finds anything, and then
// keeps the items Decide allows. A relationship-scoped role (ACL-05) is
// allowed within a scope only where it is allowed without naming a
// participant.
func DecideWithin(s Subject, a Action, scope Resource) Decision {
	if d := Decide(s, a, scope); d.Allow {
		return d
	}
	for _, as := range s.Assignments {
		inner := Resource{OrgID: as.OrgID, StudyID: as.StudyID, SiteID: as.SiteID}
		if inner.OrgID != scope.OrgID || scope.ParticipantID != "" ||
			scope.StudyID != "" && inner.StudyID != scope.StudyID ||
			scope.SiteID != "" && inner.SiteID != scope.SiteID {
			continue
		}
		if d := Decide(s, a, inner); d.Allow {
			return d
		}
	}
	return Decision{Reason: "no role grants " + string(a) + " within this scope"}
}
