package accounts

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/custodia/custodia/internal/authz"
	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/ids"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

// A password may not contain the words a guess tries first (ASVS V6.1.2,
// V6.2.11): the product's name, a role's name, or the name or slug of an
// organization the person belongs to or is invited to, whatever the case;
// another organization's name is no concern of theirs.
func TestAUTH02_PasswordsRefuseTheContextsWords(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		var acc Account
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			now := sqldb.Now()
			for _, o := range []struct{ id, slug, name string }{
				{ids.New(), "riverside", "Riverside Hospital"}, {ids.New(), "lakeview", "Lakeview Trust"}} {
				if _, err := tx.ExecContext(ctx, `INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)`,
					o.id, o.slug, o.name, now); err != nil {
					return err
				}
				if o.slug == "riverside" {
					var err error
					if acc, _, err = Enrol(ctx, tx, "pat@example.org", "", authz.Assignment{OrgID: o.id, Role: authz.OrgManager}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rules, err := PasswordRules(ctx, db, acc.ID, DefaultPolicy)
		if err != nil {
			t.Fatal(err)
		}
		for _, pw := range []string{"my CUSTODIA passphrase 9", "the org-admin of the ward", "an OrgAdmin and a half",
			"site-investigator on call", "riverside at dawn please", "RiversideHospital forever", "riverside hospital forever"} {
			err := rules.Check(pw, acc.Email, acc.DisplayName)
			if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "may not contain") {
				t.Errorf("%q: %v, want refused", pw, err)
			}
		}
		for _, pw := range []string{"lakeview at dawn please", "an unrelated sturdy passphrase"} {
			if err := rules.Check(pw, acc.Email, acc.DisplayName); err != nil {
				t.Errorf("%q: %v, want accepted", pw, err)
			}
		}
	})
}
