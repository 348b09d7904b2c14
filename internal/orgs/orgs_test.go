package orgs_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/custodia/custodia/internal/errs"
	"github.com/custodia/custodia/internal/orgs"
	"github.com/custodia/custodia/internal/sqldb"
	"github.com/custodia/custodia/internal/sqldb/sqldbtest"
)

type tree struct {
	org   orgs.Organization
	study orgs.Study
	site  orgs.Site
}

func seed(t *testing.T, db *sqldb.DB, name string) tree {
	t.Helper()
	ctx := context.Background()
	var tr tree
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		if tr.org, err = orgs.CreateOrganization(ctx, tx, name, ""); err != nil {
			return err
		}
		if tr.study, err = orgs.CreateStudy(ctx, tx, tr.org.ID, orgs.KindStudy, "Trial"); err != nil {
			return err
		}
		tr.site, err = orgs.CreateSite(ctx, tx, tr.org.ID, tr.study.ID, "Site 1")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestLIFE05_StudyOfOtherOrganizationIsNotFound(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		a, b := seed(t, db, "Org A"), seed(t, db, "Org B")

		if _, err := orgs.StudyByID(ctx, db, a.org.ID, a.study.ID); err != nil {
			t.Fatalf("own study: %v", err)
		}
		if _, err := orgs.StudyByID(ctx, db, b.org.ID, a.study.ID); !errs.Is(err, errs.NotFound) {
			t.Errorf("A's study scoped to B: err = %v, want NotFound", err)
		}
		if _, err := orgs.SiteByID(ctx, db, b.org.ID, a.site.ID); !errs.Is(err, errs.NotFound) {
			t.Errorf("A's site scoped to B: err = %v, want NotFound", err)
		}
		list, err := orgs.Sites(ctx, db, b.org.ID, a.study.ID)
		if err != nil || len(list) != 0 {
			t.Errorf("B listing A's study's sites: %v, %v; want none", list, err)
		}
		// A write that names another organization's study is refused too.
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := orgs.CreateSite(ctx, tx, b.org.ID, a.study.ID, "Intruder")
			return err
		})
		if !errs.Is(err, errs.NotFound) {
			t.Errorf("creating a site in A's study as B: err = %v, want NotFound", err)
		}
	})
}

func TestLIFE05_DatabaseRefusesRowsThatCrossOrganizations(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		a, b := seed(t, db, "Org A"), seed(t, db, "Org B")
		// Even SQL that bypasses the package cannot attach B's site to A's study.
		_, err := db.ExecContext(ctx,
			`INSERT INTO sites (id, org_id, study_id, name, created_at) VALUES ('x', $1, $2, 'cross', 0)`,
			b.org.ID, a.study.ID)
		if err == nil {
			t.Fatal("database accepted a site whose organization differs from its study's")
		}
	})
}

func TestACL08_MalformedIdentifiersAreNotFound(t *testing.T) {
	db := sqldbtest.Open(t, sqldb.SQLite, sqldb.Clinical)
	a := seed(t, db, "Org A")
	for _, id := range []string{"", "1", "' OR '1'='1", a.study.ID + "x"} {
		if _, err := orgs.StudyByID(context.Background(), db, a.org.ID, id); !errs.Is(err, errs.NotFound) {
			t.Errorf("StudyByID(%q): %v, want NotFound", id, err)
		}
	}
}

func TestCreateValidatesInput(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, d sqldb.Dialect) {
		ctx := context.Background()
		db := sqldbtest.Open(t, d, sqldb.Clinical)
		a := seed(t, db, "Org A")
		for name, fn := range map[string]func(tx *sql.Tx) error{
			"duplicate slug": func(tx *sql.Tx) error { _, err := orgs.CreateOrganization(ctx, tx, "Org A", ""); return err },
			"bad slug":       func(tx *sql.Tx) error { _, err := orgs.CreateOrganization(ctx, tx, "X", "Bad Slug"); return err },
			"empty name": func(tx *sql.Tx) error {
				_, err := orgs.CreateStudy(ctx, tx, a.org.ID, orgs.KindStudy, "  ")
				return err
			},
			"bad kind":       func(tx *sql.Tx) error { _, err := orgs.CreateStudy(ctx, tx, a.org.ID, "trial", "T2"); return err },
			"control char":   func(tx *sql.Tx) error { _, err := orgs.CreateSite(ctx, tx, a.org.ID, a.study.ID, "a\x00b"); return err },
			"duplicate site": func(tx *sql.Tx) error { _, err := orgs.CreateSite(ctx, tx, a.org.ID, a.study.ID, "Site 1"); return err },
		} {
			err := db.InTx(ctx, fn)
			if k := errs.KindOf(err); k != errs.Invalid && k != errs.Conflict {
				t.Errorf("%s: err = %v, want Invalid or Conflict", name, err)
			}
		}
		studies, _ := orgs.Studies(ctx, db, a.org.ID)
		sites, _ := orgs.Sites(ctx, db, a.org.ID, a.study.ID)
		if len(studies) != 1 || len(sites) != 1 {
			t.Errorf("bad input wrote rows: %d studies, %d sites", len(studies), len(sites))
		}
	})
}

func TestSlugFrom(t *testing.T) {
	for in, want := range map[string]string{
		"Demo Organization": "demo-organization",
		"  Ünïcode & Co. ":  "n-code-co",
		"UMC Utrecht":       "umc-utrecht",
	} {
		if got := orgs.SlugFrom(in); got != want {
			t.Errorf("SlugFrom(%q) = %q, want %q", in, got, want)
		}
	}
}
