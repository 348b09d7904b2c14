package alerts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/gate"
	"github.com/custodia/custodia/internal/mail"
	"github.com/custodia/custodia/internal/sqldb"
)

// describe says what a kind of alert means, in words fit for an e-mail.
func describe(k Kind) string {
	switch k {
	case AccountLocked:
		return "an account was locked after repeated failed sign-ins"
	case AddressLimited:
		return "one source address made too many sign-in attempts"
	case SecurityEvent:
		return "a security-relevant change was made"
	}
	return "something needs your attention"
}

// MailNotifier e-mails an alert to every administrator of its organization
// (AUTH-12, AUD-05). Like every e-mail of Custodia it holds no confidential
// data (WEB-07): the kind of alert and a link, never who or what it is
// about; the details are behind the sign-in.
type MailNotifier struct {
	Gate    *gate.Gate
	Mail    mail.Sender
	BaseURL string
}

// Notify sends the alert to the organization's administrators. An alert
// for the operator alone is for the log, not for e-mail.
func (m *MailNotifier) Notify(ctx context.Context, a Alert) error {
	if a.OrgID == "" || m.Mail == nil {
		return nil
	}
	// The addresses are read as the operator, who may always read them;
	// the mails go out after the read, not while it holds the gate.
	var to []string
	err := m.Gate.Operate(ctx, "alert.notify", func(tx *gate.OpTx) error {
		tx.Nothing() // a read
		var err error
		to, err = administrators(ctx, tx, a.OrgID)
		return err
	})
	if err != nil {
		return err
	}
	text := fmt.Sprintf("A security alert was raised for your organization in Custodia: %s.\n\n"+
		"Sign in to review it:\n%s/\n\n"+
		"This message leaves out the details on purpose; they are shown only after you sign in.\n",
		describe(a.Kind), strings.TrimRight(m.BaseURL, "/"))
	var errList []error
	for _, addr := range to {
		if err := m.Mail.Send(ctx, mail.Message{To: addr, Subject: "Custodia security alert", Text: text}); err != nil {
			errList = append(errList, err)
		}
	}
	return errors.Join(errList...)
}

// administrators are the addresses of the organization's administrators.
func administrators(ctx context.Context, q sqldb.Querier, orgID string) ([]string, error) {
	rows, err := q.QueryContext(ctx,
		`SELECT DISTINCT a.email FROM role_assignments r JOIN accounts a ON a.id = r.account_id
		 WHERE r.org_id = $1 AND r.role = $2 ORDER BY a.email`, orgID, string(authz.OrgAdmin))
	if err != nil {
		return nil, fmt.Errorf("find administrators: %w", err)
	}
	defer rows.Close()
	var to []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return nil, fmt.Errorf("find administrators: %w", err)
		}
		to = append(to, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find administrators: %w", err)
	}
	return to, nil
}
