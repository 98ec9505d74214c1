/*
 * gaussPsfMath.h - per-pixel math of the gather-form spatially varying Gaussian PSF.
 *
 * This header is the single definition of the math. It is compiled twice:
 *   - by nvcc into the CUDA kernels (gaussPsfKernel.cu), one thread per pixel;
 *   - by the host C++ compiler into the CPU reference library (gaussPsfHost.cpp),
 * so the CPU library that CI tests against NumPy/PyTorch runs the very code the GPU runs.
 *
 * Semantics (docs/ARCHITECTURE.md, model.render.gauss_psf):
 *   s2(q)   = sigma(q)^2 + 0.25^2                          (effective variance, px^2)
 *   w(p, q) = exp(-|p - q|^2 / (2 s2(q))) / s2(q)          q in the (2R+1)^2 square around p
 *   out(p)  = sum_q w(p, q) image(q) / sum_q w(p, q)       neighbours outside the image excluded
 *
 * Layout: image and output are (C, H, W) planes of one batch item, sigma is one (H, W) plane;
 * the caller offsets the pointers per batch item. Accumulation is always fp32.
 *
 * Backward (fp32). With W(p) = sum_q w(p, q) and G = dL/dout:
 *   dL/dimage_c(q) = sum_p w(p, q) G_c(p) / W(p)
 *   dL/dsigma(q)   = sigma(q) / s2(q)^2 * sum_p w(p, q) (r^2 - 2 s2(q)) [sum_c image_c(q) G_c(p) / W(p) - B(p)]
 *   B(p)           = sum_c G_c(p) out_c(p) / W(p)
 * where p runs over the (2R+1)^2 square around q (the window is symmetric), inside the image.
 * The backward runs in two passes: backwardPrepPixel stores 1/W(p) and B(p) per pixel, then
 * backwardPixel gathers the gradients for each q. No atomics, so the result is deterministic.
 */
#ifndef GAUSS_PSF_MATH_H
#define GAUSS_PSF_MATH_H

#include <cuda_fp16.h>
#include <math.h>

#if defined(__CUDACC__)
#define GPSF_HD __host__ __device__ __forceinline__
#define GPSF_UNROLL _Pragma("unroll")
#else
#define GPSF_HD inline
#define GPSF_UNROLL
#endif

namespace gausspsf
{

//! Floor on the blur: s_eff = sqrt(sigma^2 + kMinSigmaPx^2), in pixels (model.render.MIN_SIGMA_PX).
constexpr float kMinSigmaPx = 0.25F;
//! Largest window radius the kernels accept (the window is (2R+1)^2 pixels).
constexpr int kMaxRadius = 64;
//! Channels accumulated together per pass over the window (weights are computed once per pass).
constexpr int kChannelChunk = 4;

//! Plane geometry of one batch item and the window radius.
struct Geometry
{
    int C; //!< channels of the image
    int H; //!< height in pixels
    int W; //!< width in pixels
    int R; //!< window radius in pixels, 0 <= R <= kMaxRadius
};

GPSF_HD float toFloat(float v)
{
    return v;
}

GPSF_HD float toFloat(__half v)
{
    return __half2float(v);
}

template <typename T>
GPSF_HD T fromFloat(float v);

template <>
GPSF_HD float fromFloat<float>(float v)
{
    return v;
}

template <>
GPSF_HD __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

GPSF_HD int imin(int a, int b)
{
    return a < b ? a : b;
}

GPSF_HD int imax(int a, int b)
{
    return a > b ? a : b;
}

//! Effective variance s_eff^2 = sigma^2 + kMinSigmaPx^2 (px^2).
GPSF_HD float effectiveVariance(float sigma)
{
    return sigma * sigma + kMinSigmaPx * kMinSigmaPx;
}

//! Unnormalised weight exp(-r2 / (2 s2)) / s2, given r2 = |p - q|^2 and invVar = 1 / s2.
GPSF_HD float psfWeight(float r2, float invVar)
{
    return expf(-0.5F * r2 * invVar) * invVar;
}

//! Forward for output pixel (y, x): out_c(y, x) for every channel c.
template <typename T>
GPSF_HD void forwardPixel(T const* image, T const* sigma, T* out, Geometry g, int y, int x)
{
    int const hw = g.H * g.W;
    int const y0 = imax(y - g.R, 0);
    int const y1 = imin(y + g.R, g.H - 1);
    int const x0 = imax(x - g.R, 0);
    int const x1 = imin(x + g.R, g.W - 1);
    for (int c0 = 0; c0 < g.C; c0 += kChannelChunk)
    {
        int const nc = imin(kChannelChunk, g.C - c0);
        float acc[kChannelChunk] = {0.F, 0.F, 0.F, 0.F};
        float wsum = 0.F;
        for (int yy = y0; yy <= y1; ++yy)
        {
            int const dy = yy - y;
            for (int xx = x0; xx <= x1; ++xx)
            {
                int const dx = xx - x;
                int const q = yy * g.W + xx;
                float const invVar = 1.F / effectiveVariance(toFloat(sigma[q]));
                float const w = psfWeight(static_cast<float>(dy * dy + dx * dx), invVar);
                wsum += w;
GPSF_UNROLL
                for (int k = 0; k < kChannelChunk; ++k)
                {
                    if (k < nc)
                    {
                        acc[k] += w * toFloat(image[(c0 + k) * hw + q]);
                    }
                }
            }
        }
        float const invSum = 1.F / wsum;
        int const p = y * g.W + x;
        for (int k = 0; k < nc; ++k)
        {
            out[(c0 + k) * hw + p] = fromFloat<T>(acc[k] * invSum);
        }
    }
}

//! Backward pass 1 for pixel p = (y, x): invWeightSum[p] = 1 / W(p), bTerm[p] = B(p) (see top of file).
GPSF_HD void backwardPrepPixel(float const* image, float const* sigma, float const* gradOut, float* invWeightSum,
    float* bTerm, Geometry g, int y, int x)
{
    int const hw = g.H * g.W;
    int const p = y * g.W + x;
    int const y0 = imax(y - g.R, 0);
    int const y1 = imin(y + g.R, g.H - 1);
    int const x0 = imax(x - g.R, 0);
    int const x1 = imin(x + g.R, g.W - 1);
    float dot = 0.F; // sum_c G_c(p) * out_c(p)
    float invSum = 0.F;
    for (int c0 = 0; c0 < g.C; c0 += kChannelChunk)
    {
        int const nc = imin(kChannelChunk, g.C - c0);
        float acc[kChannelChunk] = {0.F, 0.F, 0.F, 0.F};
        float wsum = 0.F;
        for (int yy = y0; yy <= y1; ++yy)
        {
            int const dy = yy - y;
            for (int xx = x0; xx <= x1; ++xx)
            {
                int const dx = xx - x;
                int const q = yy * g.W + xx;
                float const invVar = 1.F / effectiveVariance(sigma[q]);
                float const w = psfWeight(static_cast<float>(dy * dy + dx * dx), invVar);
                wsum += w;
GPSF_UNROLL
                for (int k = 0; k < kChannelChunk; ++k)
                {
                    if (k < nc)
                    {
                        acc[k] += w * image[(c0 + k) * hw + q];
                    }
                }
            }
        }
        invSum = 1.F / wsum;
        for (int k = 0; k < nc; ++k)
        {
            dot += gradOut[(c0 + k) * hw + p] * (acc[k] * invSum);
        }
    }
    invWeightSum[p] = invSum;
    bTerm[p] = dot * invSum;
}

//! Backward pass 2 for source pixel q = (y, x): gradImage_c(q) for every c and gradSigma(q).
GPSF_HD void backwardPixel(float const* image, float const* sigma, float const* gradOut, float const* invWeightSum,
    float const* bTerm, float* gradImage, float* gradSigma, Geometry g, int y, int x)
{
    int const hw = g.H * g.W;
    int const q = y * g.W + x;
    int const y0 = imax(y - g.R, 0);
    int const y1 = imin(y + g.R, g.H - 1);
    int const x0 = imax(x - g.R, 0);
    int const x1 = imin(x + g.R, g.W - 1);
    float const sq = sigma[q];
    float const var = effectiveVariance(sq);
    float const invVar = 1.F / var;
    float gs = 0.F;
    for (int c0 = 0; c0 < g.C; c0 += kChannelChunk)
    {
        int const nc = imin(kChannelChunk, g.C - c0);
        float iq[kChannelChunk] = {0.F, 0.F, 0.F, 0.F};
        float gacc[kChannelChunk] = {0.F, 0.F, 0.F, 0.F};
        for (int k = 0; k < nc; ++k)
        {
            iq[k] = image[(c0 + k) * hw + q];
        }
        for (int yy = y0; yy <= y1; ++yy)
        {
            int const dy = yy - y;
            for (int xx = x0; xx <= x1; ++xx)
            {
                int const dx = xx - x;
                int const p = yy * g.W + xx;
                float const r2 = static_cast<float>(dy * dy + dx * dx);
                float const w = psfWeight(r2, invVar);
                float const a = invWeightSum[p];
                float t = (c0 == 0) ? -bTerm[p] : 0.F;
GPSF_UNROLL
                for (int k = 0; k < kChannelChunk; ++k)
                {
                    if (k < nc)
                    {
                        float const gp = gradOut[(c0 + k) * hw + p] * a;
                        gacc[k] += w * gp;
                        t += iq[k] * gp;
                    }
                }
                gs += w * (r2 - 2.F * var) * t;
            }
        }
        for (int k = 0; k < nc; ++k)
        {
            gradImage[(c0 + k) * hw + q] = gacc[k];
        }
    }
    gradSigma[q] = gs * sq * invVar * invVar;
}

} // namespace gausspsf

#endif // GAUSS_PSF_MATH_H
