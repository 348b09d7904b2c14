package browsertest_test

import (
	"os"
	"testing"

	"github.com/custodia/custodia/internal/instance/instancetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	instancetest.RemoveSeeded()
	os.Exit(code)
}
