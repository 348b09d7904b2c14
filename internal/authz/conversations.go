package authz

import "slices"

// ConversationUse reads and writes a conversation between a care provider
// and their client (ACL-05, ACL-06). No role's permission table holds it,
// and so no custom role can be given it (Actions lists only the tables'):
// it is held by relation. A built-in relationship-scoped role (care
// provider, participant) holds it within its scope:
//
//   - on its scope without naming a participant, only to list its own
//     conversations and clients (AuthorizeList), and
//   - on a resource naming a participant and the conversation's Members,
//     only when the requester is one of the members and is related to the
//     participant in the role's way: a care provider through a care
//     relation, the participant through their own account.
//
// Everyone else is refused: an organization admin or manager manages who
// is whose care provider but reads no conversation, nor does a care
// provider of the same participant who is not a member.
const ConversationUse Action = "conversation.use"

// conversationAllows reports whether assignment as of s allows
// conversation.use on r (see ConversationUse).
func conversationAllows(s Subject, as Assignment, r Resource) bool {
	if _, scoped := relationshipScoped[as.Role]; !scoped || as.CustomRoleID != "" {
		return false
	}
	if !covers(as, ConversationUse, r) {
		return false
	}
	if r.ParticipantID == "" {
		return r.Members == nil
	}
	return slices.Contains(r.Members, s.AccountID) && relationAllows(s, as, ConversationUse, r)
}
