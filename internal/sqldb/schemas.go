package sqldb

import (
	"embed"
	"io/fs"
)

//go:embed migrations
var migrations embed.FS

func sub(dir string) fs.FS {
	f, err := fs.Sub(migrations, "migrations/"+dir)
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return f
}

// Clinical is the schema of the clinical database: organizations, studies,
// sites, accounts, roles and pseudonymous participant data.
var Clinical = Schema{Name: "clinical", FS: sub("clinical")}

// Identity is the schema of the identity database, which holds the only
// copies of participants' identifying data, linked to the clinical database
// by pseudonym alone (CRY-09).
var Identity = Schema{Name: "identity", FS: sub("identity")}
