package api

import (
	"net/http"
	"slices"
	"time"

	"github.com/custodia/custodia/internal/participants"
)

// participantJSON is the pseudonymous record: never an identifying value.
type participantJSON struct {
	Pseudonym string `json:"pseudonym"`
	StudyID   string `json:"study_id"`
	SiteID    string `json:"site_id"`
	Status    string `json:"status"`
	Identity  string `json:"identity"` // none, recorded or erased
	CreatedAt string `json:"created_at"`
	ErasedAt  string `json:"erased_at,omitempty"`
	Arm       string `json:"arm,omitempty"`
}

func participantOut(p participants.Participant) participantJSON {
	out := participantJSON{
		Pseudonym: p.Pseudonym, StudyID: p.StudyID, SiteID: p.SiteID, Status: p.Status,
		Identity: string(p.Identity), CreatedAt: p.CreatedAt.UTC().Format(time.RFC3339), Arm: p.Arm,
	}
	if !p.ErasedAt.IsZero() {
		out.ErasedAt = p.ErasedAt.UTC().Format(time.RFC3339)
	}
	return out
}

// enrolRequest holds the optional identity fields of an enrolment.
type enrolRequest struct {
	Name       string `json:"name"`
	BirthDate  string `json:"birth_date"`
	Email      string `json:"email"`
	Phone      string `json:"phone"`
	NationalID string `json:"national_id"`
}

func handleEnrolParticipant(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req enrolRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		id := participants.Identity{
			participants.Name: req.Name, participants.BirthDate: req.BirthDate, participants.Email: req.Email,
			participants.Phone: req.Phone, participants.NationalID: req.NationalID,
		}
		p, err := d.Participants.Enrol(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, participantOut(p))
		return nil
	})
}

func handleListParticipants(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		after, limit, err := pageQuery(r.URL.Query(), "after", participants.MaxPage)
		if err != nil {
			return err
		}
		list, err := d.Participants.List(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), after, limit)
		if err != nil {
			return err
		}
		out := make([]participantJSON, len(list))
		for i, p := range list {
			out[i] = participantOut(p)
		}
		writeJSON(w, http.StatusOK, map[string]any{"participants": out})
		return nil
	})
}

func handleGetParticipant(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		p, err := d.Participants.Get(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, participantOut(p))
		return nil
	})
}

// fieldJSON is one identity field in a re-identification: a value shown,
// or only the fact that one exists (CRY-06).
type fieldJSON struct {
	Present bool   `json:"present"`
	Value   string `json:"value,omitempty"`
}

type identityJSON struct {
	Participant string               `json:"participant"`
	Identity    string               `json:"identity"` // none, recorded or erased
	Fields      map[string]fieldJSON `json:"fields"`
	Shown       []string             `json:"shown"`
	Withheld    []string             `json:"withheld"`
}

func handleRevealIdentity(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		rv, err := d.Participants.Reveal(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant"))
		if err != nil {
			return err
		}
		out := identityJSON{Participant: rv.Participant.Pseudonym, Identity: string(rv.State),
			Fields: map[string]fieldJSON{}, Shown: []string{}, Withheld: []string{}}
		for _, f := range rv.Shown {
			out.Fields[string(f)] = fieldJSON{Present: true, Value: rv.Values[f]}
			out.Shown = append(out.Shown, string(f))
		}
		for _, f := range rv.Withheld {
			out.Fields[string(f)] = fieldJSON{Present: true}
			out.Withheld = append(out.Withheld, string(f))
		}
		// The values of the study's identifier fields, by form.field.
		for name, v := range rv.Identifiers {
			out.Fields[name] = fieldJSON{Present: true, Value: v}
			out.Shown = append(out.Shown, name)
		}
		for _, name := range rv.IdentifiersWithheld {
			out.Fields[name] = fieldJSON{Present: true}
			out.Withheld = append(out.Withheld, name)
		}
		slices.Sort(out.Shown[len(rv.Shown):])
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

func handleEraseIdentity(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		p, err := d.Participants.Erase(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"), r.PathValue("site"), r.PathValue("participant"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, participantOut(p))
		return nil
	})
}

// handleDeleteParticipant deletes a participant (LIFE-01) for the reason in
// the body, as an entry is deleted: 204, and the participant is hidden and
// locked until restored or purged.
func handleDeleteParticipant(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Reason string `json:"reason"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if err := d.Participants.Delete(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"),
			r.PathValue("site"), r.PathValue("participant"), req.Reason); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// handleRestoreParticipant restores a deleted participant within the
// organization's retention period and answers them.
func handleRestoreParticipant(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		p, err := d.Participants.Restore(r.Context(), actor(d, r), r.PathValue("org"), r.PathValue("study"),
			r.PathValue("site"), r.PathValue("participant"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, participantOut(p))
		return nil
	})
}

// handleInviteParticipantAccount invites a participant to an account of
// their own (ACL-05): the answer is the same fixed text as a staff
// invitation's.
func handleInviteParticipantAccount(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Email string `json:"email"`
		}
		if err := decode(r, &req); err != nil {
			return err
		}
		if err := d.Links.InviteParticipant(r.Context(), d.Participants, actor(d, r), r.PathValue("org"),
			r.PathValue("study"), r.PathValue("site"), r.PathValue("participant"), req.Email); err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, inviteAnswer)
		return nil
	})
}

// handleWithdrawParticipantAccount withdraws a participant's pending
// invitations to an account of their own (ACL-05): their links stop
// working.
func handleWithdrawParticipantAccount(d Deps) http.Handler {
	return handle(d, func(w http.ResponseWriter, r *http.Request) error {
		if err := d.Participants.WithdrawAccountInvitation(r.Context(), actor(d, r), r.PathValue("org"),
			r.PathValue("study"), r.PathValue("site"), r.PathValue("participant")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}
