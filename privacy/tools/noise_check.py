#!/usr/bin/env python3
"""Independent check of Passerelle's noise, from the outside.

Draws releases through `passerelle privacy sample` (the production noise path:
policy parameter handling, exact samplers, noise pool, OpenSSL CSPRNG) and
checks them against the exact distributions, with nothing shared with the
C++ code but the command line:

  shape   chi-square goodness of fit against the exact pmf passes at
          p > 1e-6, and the same samples fail against the scale x0.97 and
          x1.03 (the test has the power to see a 3% error);
  epsilon for neighbouring counts c and c+1, the Wilson lower confidence bound
          (z = 5) of ln P[Y >= c+1 | c+1] - ln P[Y >= c+1 | c] does not
          exceed the claimed epsilon (discrete Laplace only).

Usage: noise_check.py --bin PATH [--n 1000000] [--mechanism laplace|gaussian|both]
Exit 0 when every check passes; prints one line per check.
Standard library only.
"""

import argparse
import math
import subprocess
import sys


def sample(binary, mechanism, param_flag, param, count, n):
    out = subprocess.run(
        [binary, "privacy", "sample", "--mechanism", mechanism, param_flag,
         repr(param), "--count", str(count), "--n", str(n)],
        check=True, capture_output=True, text=True).stdout
    values = [int(line) for line in out.split()]
    if len(values) != n:
        raise SystemExit(f"expected {n} samples, got {len(values)}")
    return values


def laplace_pmf(t):
    """Discrete Laplace with scale t: P(k) = tanh(1/2t) e^{-|k|/t}."""
    c = math.tanh(1.0 / (2.0 * t))
    return lambda k: c * math.exp(-abs(k) / t)


def gaussian_pmf(sigma):
    """Discrete Gaussian: P(k) proportional to e^{-k^2 / 2 sigma^2}."""
    span = int(60 * sigma) + 60
    z = sum(math.exp(-k * k / (2 * sigma * sigma)) for k in range(-span, span + 1))
    return lambda k: math.exp(-k * k / (2 * sigma * sigma)) / z


def upper_gamma_q(s, x):
    """Regularized upper incomplete gamma Q(s, x) (Numerical Recipes)."""
    if x <= 0:
        return 1.0
    if x < s + 1:
        term = total = 1.0 / s
        a = s
        for _ in range(100000):
            a += 1
            term *= x / a
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + s * math.log(x) - math.lgamma(s)))
    b = x + 1 - s
    c = 1e300
    d = 1 / b
    h = d
    for i in range(1, 100000):
        an = -i * (i - s)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(-x + s * math.log(x) - math.lgamma(s)) * h


def chi_square_p(noise, pmf):
    """p-value of the samples against pmf; cells with expected count < 5 are
    pooled into the two tails."""
    n = len(noise)
    counts = {}
    for v in noise:
        counts[v] = counts.get(v, 0) + 1
    lo = 0
    while n * pmf(lo - 1) >= 5:
        lo -= 1
    hi = 0
    while n * pmf(hi + 1) >= 5:
        hi += 1
    inner = sum(pmf(k) for k in range(lo, hi + 1))
    left = sum(pmf(k) for k in range(lo - 1, lo - 2000, -1))
    right = max(0.0, 1.0 - inner - left)
    observed = [sum(c for k, c in counts.items() if k < lo)]
    expected = [n * left]
    for k in range(lo, hi + 1):
        observed.append(counts.get(k, 0))
        expected.append(n * pmf(k))
    observed.append(sum(c for k, c in counts.items() if k > hi))
    expected.append(n * right)
    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected) if e > 0)
    dof = len(observed) - 1
    return upper_gamma_q(dof / 2.0, stat / 2.0), stat, dof


def wilson(successes, n, z):
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(centre - half, 1e-300), min(centre + half, 1.0)


def check_shape(label, noise, pmf_of_scale, scale):
    ok = True
    p, stat, dof = chi_square_p(noise, pmf_of_scale(scale))
    passed = p > 1e-6
    ok &= passed
    print(f"{'PASS' if passed else 'FAIL'} {label} shape: chi2={stat:.1f} dof={dof} p={p:.3g} (> 1e-6)")
    for factor in (0.97, 1.03):
        p_off, stat_off, _ = chi_square_p(noise, pmf_of_scale(scale * factor))
        rejected = p_off < 1e-6
        ok &= rejected
        print(f"{'PASS' if rejected else 'FAIL'} {label} power: scale x{factor} rejected "
              f"(chi2={stat_off:.1f} p={p_off:.3g} < 1e-6)")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--n", type=int, default=1000000)
    parser.add_argument("--mechanism", default="both", choices=["laplace", "gaussian", "both"])
    args = parser.parse_args()
    ok = True
    count = 1000

    if args.mechanism in ("laplace", "both"):
        epsilon = 0.5
        scale = 1.0 / epsilon
        ys = sample(args.bin, "laplace", "--epsilon", epsilon, count, args.n)
        ok &= check_shape(f"laplace eps={epsilon}", [y - count for y in ys], laplace_pmf, scale)
        # Neighbouring counts: c (ys above) and c + 1.
        ys1 = sample(args.bin, "laplace", "--epsilon", epsilon, count + 1, args.n)
        above_c1 = sum(1 for y in ys1 if y >= count + 1)
        above_c = sum(1 for y in ys if y >= count + 1)
        lo1, _ = wilson(above_c1, args.n, 5.0)
        _, hi0 = wilson(above_c, args.n, 5.0)
        lower = math.log(lo1) - math.log(hi0)
        point = math.log(above_c1 / args.n) - math.log(above_c / args.n)
        passed = lower <= epsilon
        ok &= passed
        print(f"{'PASS' if passed else 'FAIL'} laplace eps={epsilon} epsilon claim: lower bound "
              f"{lower:.4f} <= {epsilon} (point estimate {point:.4f}, Wilson z=5)")

    if args.mechanism in ("gaussian", "both"):
        rho = 0.125
        sigma = math.sqrt(1.0 / (2.0 * rho))
        ys = sample(args.bin, "gaussian", "--rho", rho, count, args.n)
        ok &= check_shape(f"gaussian rho={rho}", [y - count for y in ys], gaussian_pmf, sigma)

    print("noise check:", "every check passed" if ok else "a check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
