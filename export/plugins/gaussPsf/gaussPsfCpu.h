/*
 * gaussPsfCpu.h - the gather-form Gaussian PSF on CPU cores, factorised (onnxruntime op, CPU library).
 *
 * Same semantics and the same math definitions as gaussPsfMath.h (effectiveVariance, kMinSigmaPx,
 * kMaxRadius): with s2(q) = sigma(q)^2 + 0.25^2 and b(q) = 1 / s2(q),
 *
 *   w(p, q) = b(q) exp(-|p - q|^2 / (2 s2(q)))  =  b(q) G_|dy|(q) G_|dx|(q),   G_k(q) = exp(-k^2 b(q) / 2)
 *   out(p)  = sum_q w(p, q) image(q) / sum_q w(p, q)      over the (2R+1)^2 square, inside the image.
 *
 * gaussPsfMath.h's forwardPixel evaluates (2R+1)^2 exponentials per output pixel (one GPU thread per
 * pixel); on a CPU that is 4225 exponentials per pixel at R = 32. Here the weight is factorised instead
 * (as model.render does): per source pixel q, R + 1 table values G_k(q) (one exp and a product
 * recurrence in double), and the accumulation is organised by source row:
 *
 *   for each source row yy and each |dy| = ky:  B_a(q) = G_ky(q) u_a(q)      u = (b image_0..C-1, b)
 *     Z_a(x) = sum_{kx} G_kx(x+kx) B_a(x+kx) + G_kx(x-kx) B_a(x-kx)            (one vector pass per kx)
 *     Z is added to output rows yy - ky and yy + ky (the two rows share it).
 *
 * So each (|dy|, |dx|) pair costs two fused multiply-adds per array and pixel, with the output pixel's
 * accumulators in registers over a block of kLanes pixels. Table entries below kTableFloor are zero
 * (a dropped weight is < 1e-15 b(q), far below fp32 resolution of the normalised result; this also keeps
 * subnormals out). So a source pixel q reaches only |dx|, |dy| <= cut(q) = floor(sqrt(2 ln(1/floor) / b(q)))
 * (about 8.3 s_eff, capped at R): for each block of kLanes output pixels and source row, the loops over
 * |dy| and |dx| stop at the largest cut(q) among the source pixels that reach the block, which skips most
 * of the window where the image is sharp. The normaliser (the last array, u = b) is
 * accumulated with the channels, so the division happens once per pixel.
 *
 * Work splits into tasks (image, band of source rows), each accumulating into a private buffer covering
 * its rows +- R; a second pass sums the overlapping buffers and normalises (rows). No atomics: the result
 * does not depend on the number of threads.
 */
#ifndef GAUSS_PSF_CPU_H
#define GAUSS_PSF_CPU_H

#include "gaussPsfMath.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace gausspsf
{
namespace cpu
{

//! Table values G_k below this are zero (see the top of the file).
constexpr double kTableFloor = 1e-15;
//! Output pixels accumulated together in registers.
constexpr int kLanes = 16;
//! Arrays (channels + normaliser) accumulated per pass.
constexpr int kGroup = 4;

//! Flush denormals to zero on this thread while alive (restores the previous mode).
class FlushDenormals
{
public:
    FlushDenormals()
    {
#if defined(__x86_64__) || defined(__i386__)
        mSaved = _mm_getcsr();
        _mm_setcsr(mSaved | 0x8040U); // FTZ | DAZ
#elif defined(__aarch64__)
        __asm__ __volatile__("mrs %0, fpcr" : "=r"(mSaved));
        uint64_t const fz = mSaved | (uint64_t{1} << 24);
        __asm__ __volatile__("msr fpcr, %0" : : "r"(fz));
#endif
    }
    ~FlushDenormals()
    {
#if defined(__x86_64__) || defined(__i386__)
        _mm_setcsr(mSaved);
#elif defined(__aarch64__)
        __asm__ __volatile__("msr fpcr, %0" : : "r"(mSaved));
#endif
    }
    FlushDenormals(FlushDenormals const&) = delete;
    FlushDenormals& operator=(FlushDenormals const&) = delete;

private:
#if defined(__aarch64__)
    uint64_t mSaved{0};
#else
    unsigned int mSaved{0};
#endif
};

//! One call: dense NCHW float32 buffers, sigma (N, 1, H, W) in pixels.
struct Problem
{
    float const* image;
    float const* sigma;
    float* out;
    int64_t n;
    int c;
    int h;
    int w;
    int r;
};

//! Returns an error message for bad sizes, or an empty string.
inline std::string checkProblem(Problem const& p)
{
    if (p.n < 0 || p.c <= 0 || p.h <= 0 || p.w <= 0)
    {
        return "GaussPSF: sizes must be N >= 0 and C, H, W > 0, got N=" + std::to_string(p.n) + " C="
            + std::to_string(p.c) + " H=" + std::to_string(p.h) + " W=" + std::to_string(p.w);
    }
    if (p.r < 0 || p.r > kMaxRadius)
    {
        return "GaussPSF: radius must be in [0, " + std::to_string(kMaxRadius) + "], got " + std::to_string(p.r);
    }
    if (p.n > 0 && (p.image == nullptr || p.sigma == nullptr || p.out == nullptr))
    {
        return "GaussPSF: null buffer";
    }
    return {};
}

namespace detail
{

//! Eight floats as one value: GCC/Clang vector extension (AVX on x86-64 with -march=native, two NEON
//! registers on aarch64, SSE otherwise). Loads and stores go through memcpy (no alignment needed).
typedef float Vec8 __attribute__((vector_size(32)));
constexpr int kVecLanes = 8;
static_assert(kLanes % kVecLanes == 0, "kLanes must be a multiple of the vector width");

inline Vec8 load8(float const* p)
{
    Vec8 v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

inline void store8(float* p, Vec8 v)
{
    std::memcpy(p, &v, sizeof(v));
}

//! Z_a(x0 + j) for j < kLanes and arrays a < NA of one group: see the top of the file.
template <int NA>
inline void accumulateBlock(float const* const* tab, float const* const* bk, int x0, int r, int kmax, float* z, int zStride)
{
    constexpr int kV = kLanes / kVecLanes;
    Vec8 acc[NA][kV];
    int const base = x0 + r;
    for (int a = 0; a < NA; ++a)
    {
        for (int v = 0; v < kV; ++v)
        {
            acc[a][v] = load8(bk[a] + base + v * kVecLanes); // kx = 0: G_0 = 1 inside the image, B = 0 outside
        }
    }
    for (int kx = 1; kx <= kmax; ++kx)
    {
        float const* tp = tab[kx] + base + kx;
        float const* tm = tab[kx] + base - kx;
        Vec8 gp[kV];
        Vec8 gm[kV];
        for (int v = 0; v < kV; ++v)
        {
            gp[v] = load8(tp + v * kVecLanes);
            gm[v] = load8(tm + v * kVecLanes);
        }
        for (int a = 0; a < NA; ++a)
        {
            float const* bp = bk[a] + base + kx;
            float const* bm = bk[a] + base - kx;
            for (int v = 0; v < kV; ++v)
            {
                acc[a][v] += gp[v] * load8(bp + v * kVecLanes) + gm[v] * load8(bm + v * kVecLanes);
            }
        }
    }
    for (int a = 0; a < NA; ++a)
    {
        for (int v = 0; v < kV; ++v)
        {
            store8(z + static_cast<std::ptrdiff_t>(a) * zStride + x0 + v * kVecLanes, acc[a][v]);
        }
    }
}

inline void accumulateGroup(int na, float const* const* tab, float const* const* bk, int x0, int r, int kmax, float* z,
    int zStride)
{
    switch (na)
    {
    case 1: accumulateBlock<1>(tab, bk, x0, r, kmax, z, zStride); break;
    case 2: accumulateBlock<2>(tab, bk, x0, r, kmax, z, zStride); break;
    case 3: accumulateBlock<3>(tab, bk, x0, r, kmax, z, zStride); break;
    default: accumulateBlock<4>(tab, bk, x0, r, kmax, z, zStride); break;
    }
}

} // namespace detail

/*!
 * The forward pass of one call, split into tasks that may run on any threads in any order:
 * run every accumulate(t) for t < taskCount(), then every finishRow(i) for i < rowCount().
 */
class Forward
{
public:
    explicit Forward(Problem const& p)
        : mP(p)
    {
        std::string const error = checkProblem(p);
        if (!error.empty())
        {
            throw std::invalid_argument(error);
        }
        mArrays = p.c + 1;
        mRowLen = p.w + 2 * p.r + kLanes;
        mBandRows = std::min(p.h, std::max(32, 2 * p.r));
        mBands = (p.h + mBandRows - 1) / mBandRows;
        mOffsets.resize(static_cast<size_t>(mBands) + 1, 0);
        for (int b = 0; b < mBands; ++b)
        {
            int const lo = bandLo(b);
            int const hi = bandHi(b);
            mOffsets[b + 1] = mOffsets[b] + static_cast<size_t>(mArrays) * static_cast<size_t>(hi - lo) * p.w;
        }
        mAcc.resize(static_cast<size_t>(p.n) * mOffsets[mBands]);
    }

    size_t taskCount() const
    {
        return static_cast<size_t>(mP.n) * static_cast<size_t>(mBands);
    }

    size_t rowCount() const
    {
        return static_cast<size_t>(mP.n) * static_cast<size_t>(mP.h);
    }

    //! Accumulates source band t % bands of image t / bands into its private buffer.
    void accumulate(size_t t)
    {
        FlushDenormals const ftz;
        int64_t const ni = static_cast<int64_t>(t / mBands);
        int const band = static_cast<int>(t % mBands);
        int const h = mP.h;
        int const w = mP.w;
        int const r = mP.r;
        int const s0 = band * mBandRows;
        int const s1 = std::min(h, s0 + mBandRows);
        int const lo = bandLo(band);
        int const hi = bandHi(band);
        size_t const planeAcc = static_cast<size_t>(hi - lo) * w;
        float* acc = mAcc.data() + static_cast<size_t>(ni) * mOffsets[mBands] + mOffsets[band];
        std::fill(acc, acc + planeAcc * mArrays, 0.F);

        size_t const len = static_cast<size_t>(mRowLen);
        std::vector<float> tabBuf(static_cast<size_t>(r + 1) * len, 0.F);
        std::vector<float> uBuf(static_cast<size_t>(mArrays) * len, 0.F);
        std::vector<float> bBuf(static_cast<size_t>(mArrays) * len, 0.F);
        int const zStride = ((w + kLanes - 1) / kLanes) * kLanes;
        std::vector<float> zBuf(static_cast<size_t>(mArrays) * zStride, 0.F);
        std::vector<float const*> tab(static_cast<size_t>(r + 1));
        std::vector<float const*> bk(static_cast<size_t>(mArrays));
        for (int k = 0; k <= r; ++k)
        {
            tab[k] = tabBuf.data() + k * len;
        }
        for (int a = 0; a < mArrays; ++a)
        {
            bk[a] = bBuf.data() + a * len;
        }
        std::vector<int> cut(static_cast<size_t>(w));
        int const blocks = (w + kLanes - 1) / kLanes;
        std::vector<int> blockK(static_cast<size_t>(blocks));

        size_t const hw = static_cast<size_t>(h) * w;
        float const* img = mP.image + static_cast<size_t>(ni) * mP.c * hw;
        float const* sig = mP.sigma + static_cast<size_t>(ni) * hw;
        double const logFloor2 = 2.0 * -std::log(kTableFloor);

        for (int yy = s0; yy < s1; ++yy)
        {
            // Row tables: u_a at padded index x + r, G_k (zero below kTableFloor and outside the image).
            int kRow = 0;
            for (int x = 0; x < w; ++x)
            {
                float const var = effectiveVariance(sig[static_cast<size_t>(yy) * w + x]);
                float const iv = 1.F / var;
                int const xp = x + r;
                for (int ch = 0; ch < mP.c; ++ch)
                {
                    uBuf[ch * len + xp] = img[ch * hw + static_cast<size_t>(yy) * w + x] * iv;
                }
                uBuf[static_cast<size_t>(mP.c) * len + xp] = iv;
                // G_k >= floor  <=>  k^2 iv / 2 <= ln(1 / floor)
                int const kc = static_cast<int>(std::min<double>(r, std::floor(std::sqrt(logFloor2 / iv))));
                cut[x] = kc;
                kRow = std::max(kRow, kc);
                double const e1 = std::exp(-0.5 * static_cast<double>(iv));
                double const e2 = e1 * e1;
                double g = 1.0;
                double d = e1; // G_k = G_{k-1} e1^(2k-1)
                tabBuf[xp] = 1.F;
                int k = 1;
                for (; k <= kc; ++k)
                {
                    g *= d;
                    d *= e2;
                    tabBuf[k * len + xp] = static_cast<float>(g);
                }
                for (; k <= r; ++k)
                {
                    tabBuf[k * len + xp] = 0.F;
                }
            }
            // blockK[b]: the largest cut(q) among the source pixels q of this row that reach block b
            // (distance to the block <= cut(q)); no |dx| or |dy| beyond it has a nonzero weight there.
            for (int b = 0; b < blocks; ++b)
            {
                int const x0 = b * kLanes;
                int const x1 = std::min(w, x0 + kLanes) - 1;
                int k = 0;
                for (int q = std::max(0, x0 - kRow); q <= std::min(w - 1, x1 + kRow); ++q)
                {
                    int const dist = q < x0 ? x0 - q : (q > x1 ? q - x1 : 0);
                    if (dist <= cut[q])
                    {
                        k = std::max(k, cut[q]);
                    }
                }
                blockK[b] = k;
            }
            for (int ky = 0; ky <= kRow; ++ky)
            {
                int const ya = yy - ky; // >= lo: lo = max(0, s0 - r) and ky <= r
                int const yb = yy + ky; // < hi unless >= h
                bool const toA = ya >= 0;
                bool const toB = ky > 0 && yb < h;
                if (!toA && !toB)
                {
                    continue;
                }
                float const* t = tab[ky];
                for (int a = 0; a < mArrays; ++a)
                {
                    float const* u = uBuf.data() + a * len;
                    float* b = bBuf.data() + a * len;
                    for (size_t i = 0; i < len; ++i)
                    {
                        b[i] = t[i] * u[i];
                    }
                }
                for (int g0 = 0; g0 < mArrays; g0 += kGroup)
                {
                    int const na = std::min(kGroup, mArrays - g0);
                    for (int b = 0; b < blocks; ++b)
                    {
                        if (ky <= blockK[b])
                        {
                            detail::accumulateGroup(na, tab.data(), bk.data() + g0, b * kLanes, r, blockK[b],
                                zBuf.data() + static_cast<size_t>(g0) * zStride, zStride);
                        }
                    }
                }
                for (int b = 0; b < blocks; ++b)
                {
                    if (ky > blockK[b])
                    {
                        continue; // nothing reaches this block from |dy| = ky
                    }
                    int const x0 = b * kLanes;
                    int const x1 = std::min(w, x0 + kLanes);
                    for (int a = 0; a < mArrays; ++a)
                    {
                        float const* z = zBuf.data() + static_cast<size_t>(a) * zStride;
                        if (toA)
                        {
                            float* dst = acc + a * planeAcc + static_cast<size_t>(ya - lo) * w;
                            for (int x = x0; x < x1; ++x)
                            {
                                dst[x] += z[x];
                            }
                        }
                        if (toB)
                        {
                            float* dst = acc + a * planeAcc + static_cast<size_t>(yb - lo) * w;
                            for (int x = x0; x < x1; ++x)
                            {
                                dst[x] += z[x];
                            }
                        }
                    }
                }
            }
        }
    }

    //! Sums the band buffers that cover output row i % H of image i / H and normalises it.
    void finishRow(size_t i)
    {
        FlushDenormals const ftz;
        int64_t const ni = static_cast<int64_t>(i / mP.h);
        int const y = static_cast<int>(i % mP.h);
        int const w = mP.w;
        std::vector<float> sum(static_cast<size_t>(mArrays) * w, 0.F);
        float const* accImage = mAcc.data() + static_cast<size_t>(ni) * mOffsets[mBands];
        for (int b = 0; b < mBands; ++b)
        {
            int const lo = bandLo(b);
            int const hi = bandHi(b);
            if (y < lo || y >= hi)
            {
                continue;
            }
            size_t const planeAcc = static_cast<size_t>(hi - lo) * w;
            float const* src = accImage + mOffsets[b] + static_cast<size_t>(y - lo) * w;
            for (int a = 0; a < mArrays; ++a)
            {
                float* s = sum.data() + static_cast<size_t>(a) * w;
                float const* q = src + a * planeAcc;
                for (int x = 0; x < w; ++x)
                {
                    s[x] += q[x];
                }
            }
        }
        size_t const hw = static_cast<size_t>(mP.h) * w;
        float const* den = sum.data() + static_cast<size_t>(mP.c) * w;
        for (int ch = 0; ch < mP.c; ++ch)
        {
            float* dst = mP.out + (static_cast<size_t>(ni) * mP.c + ch) * hw + static_cast<size_t>(y) * w;
            float const* num = sum.data() + static_cast<size_t>(ch) * w;
            for (int x = 0; x < w; ++x)
            {
                dst[x] = num[x] / den[x];
            }
        }
    }

private:
    int bandLo(int b) const
    {
        return std::max(0, b * mBandRows - mP.r);
    }

    int bandHi(int b) const
    {
        return std::min(mP.h, std::min(mP.h, (b + 1) * mBandRows) + mP.r);
    }

    Problem mP;
    int mArrays{0};
    int mRowLen{0};
    int mBandRows{1};
    int mBands{0};
    std::vector<size_t> mOffsets;
    std::vector<float> mAcc;
};

//! Reference: gaussPsfMath.h's forwardPixel (the CUDA kernel's per-pixel code) over every pixel, one thread.
inline void forwardReference(Problem const& p)
{
    std::string const error = checkProblem(p);
    if (!error.empty())
    {
        throw std::invalid_argument(error);
    }
    Geometry const g{p.c, p.h, p.w, p.r};
    size_t const hw = static_cast<size_t>(p.h) * p.w;
    for (int64_t b = 0; b < p.n; ++b)
    {
        for (int y = 0; y < p.h; ++y)
        {
            for (int x = 0; x < p.w; ++x)
            {
                forwardPixel(p.image + b * p.c * hw, p.sigma + b * hw, p.out + b * p.c * hw, g, y, x);
            }
        }
    }
}

} // namespace cpu
} // namespace gausspsf

#endif // GAUSS_PSF_CPU_H
