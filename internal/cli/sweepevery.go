package cli

import (
	"log/slog"
	"time"
)

// envSweepEvery names the environment variable that shortens the sweep's
// interval (sweepIdentities) outside production, for the tests that run
// several nodes and need their sweeps to meet within seconds
// (TestAVL04_ThreeNodesBehaveAsOne). It is no flag and not documented for
// operators: an hour is right for every instance, and production ignores
// it.
const envSweepEvery = "CUSTODIA_TEST_SWEEP_EVERY"

// minSweepEvery bounds the shortened interval from below.
const minSweepEvery = 100 * time.Millisecond

// sweepEvery returns the sweep's interval: sweepInterval, or, in an
// environment other than production, the duration envSweepEvery holds (at
// least minSweepEvery). A value that is not such a duration is logged and
// ignored.
func sweepEvery(env Env, environment string, log *slog.Logger) time.Duration {
	v := env.Getenv(envSweepEvery)
	if v == "" {
		return sweepInterval
	}
	d, err := time.ParseDuration(v)
	switch {
	case environment == "production":
		log.Warn("ignored in production", "variable", envSweepEvery)
	case err != nil || d < minSweepEvery:
		log.Warn("ignored: want a duration of at least "+minSweepEvery.String(), "variable", envSweepEvery, "value", v)
	default:
		log.Info("sweep interval shortened", "variable", envSweepEvery, "every", d.String())
		return d
	}
	return sweepInterval
}
