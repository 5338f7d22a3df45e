// Deterministic crash points for crash-safety tests.
//
//   PASSERELLE_CRASH_POINT("ledger.reserve.after_commit");
//
// When the environment variable PASSERELLE_CRASH_AT names a point ("NAME",
// or "NAME:N" for its N-th hit, counted from 1), the process writes one line
// to stderr ("passerelle: crash point NAME hit N: SIGKILL") and raises
// SIGKILL at that hit: no destructor, no flush, no atexit handler runs, as
// when the kernel's OOM killer or an operator's `kill -9` strikes. Without
// the variable a point costs one load of a flag set at the first call.
//
// Compiled in only for test builds: configured with
// -DPASSERELLE_CRASH_POINTS=OFF (the production build, docs/operator.md; the
// default for CMAKE_BUILD_TYPE Release and MinSizeRel), every target is
// compiled with PASSERELLE_NO_CRASH_POINTS, the macro expands to nothing (no
// point name, no check of the variable: the binary ignores
// PASSERELLE_CRASH_AT) and crash_point.cc is not built.
// crash_point::kCompiledIn tells tests which build they run in.
//
// Thread-safe: the variable is read once; hits are counted atomically.
#ifndef PASSERELLE_COMMON_CRASH_POINT_H_
#define PASSERELLE_COMMON_CRASH_POINT_H_

#ifdef PASSERELLE_NO_CRASH_POINTS

namespace passerelle::crash_point {
inline constexpr bool kCompiledIn = false;
}  // namespace passerelle::crash_point

// `name` stays type-checked (a string literal) but is never evaluated or
// emitted.
#define PASSERELLE_CRASH_POINT(name) \
  do {                               \
    (void)sizeof(name);              \
  } while (0)

#else  // PASSERELLE_NO_CRASH_POINTS

namespace passerelle::crash_point {

inline constexpr bool kCompiledIn = true;

// True when PASSERELLE_CRASH_AT is set (read once, at the first call).
bool Armed();
// Counts a hit of `name` and SIGKILLs the process at the configured one.
void Hit(const char* name);

}  // namespace passerelle::crash_point

#define PASSERELLE_CRASH_POINT(name)                               \
  do {                                                             \
    if (__builtin_expect(::passerelle::crash_point::Armed(), 0)) { \
      ::passerelle::crash_point::Hit(name);                        \
    }                                                              \
  } while (0)

#endif  // PASSERELLE_NO_CRASH_POINTS

#endif  // PASSERELLE_COMMON_CRASH_POINT_H_
