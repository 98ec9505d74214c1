/*
 * nocuda/cuda_fp16.h - the few half-precision names gaussPsfMath.h needs, for host-only builds.
 *
 * gaussPsfMath.h includes <cuda_fp16.h> for its fp16 overloads (toFloat(__half), fromFloat<__half>).
 * A machine without the CUDA toolkit (a Raspberry Pi, any CPU-only box) still compiles the onnxruntime
 * op library (gaussPsfOrt.cpp) from that header: this folder is put on the include path instead of the
 * toolkit's, and supplies an IEEE binary16 storage type with round-to-nearest-even conversions.
 * The onnxruntime op computes in fp32 only; these conversions exist so that the header compiles
 * unchanged (and they are exact, so the fp16 overloads stay correct if ever used on the host).
 * Never put this folder on the include path of an nvcc build.
 */
#ifndef GAUSS_PSF_NOCUDA_FP16_H
#define GAUSS_PSF_NOCUDA_FP16_H

#if defined(__CUDACC__)
#error "nocuda/cuda_fp16.h is for host-only builds; nvcc must use the CUDA toolkit's cuda_fp16.h"
#endif

#include <stdint.h>
#include <string.h>

//! IEEE binary16 bit pattern (storage only).
struct __half
{
    uint16_t bits;
};

//! binary16 -> binary32, exact (subnormals, infinities and NaN included).
inline float __half2float(__half h)
{
    uint32_t const sign = static_cast<uint32_t>(h.bits & 0x8000U) << 16;
    uint32_t const exponent = (h.bits >> 10) & 0x1FU;
    uint32_t mantissa = h.bits & 0x3FFU;
    uint32_t out = 0;
    if (exponent == 0x1FU)
    {
        out = sign | 0x7F800000U | (mantissa << 13); // inf / NaN
    }
    else if (exponent != 0)
    {
        out = sign | ((exponent + 112U) << 23) | (mantissa << 13); // normal: rebias 15 -> 127
    }
    else if (mantissa != 0)
    {
        int e = -1; // subnormal: normalise
        do
        {
            ++e;
            mantissa <<= 1;
        } while ((mantissa & 0x400U) == 0);
        out = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mantissa & 0x3FFU) << 13);
    }
    else
    {
        out = sign; // signed zero
    }
    float f;
    memcpy(&f, &out, sizeof(f));
    return f;
}

//! binary32 -> binary16, round to nearest, ties to even; overflow gives infinity.
inline __half __float2half_rn(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    uint16_t const sign = static_cast<uint16_t>((x >> 16) & 0x8000U);
    uint32_t const absx = x & 0x7FFFFFFFU;
    __half h;
    if (absx >= 0x7F800000U)
    {
        h.bits = static_cast<uint16_t>(sign | 0x7C00U | (absx > 0x7F800000U ? 0x200U : 0U)); // inf / quiet NaN
        return h;
    }
    if (absx >= 0x477FF000U)
    {
        h.bits = static_cast<uint16_t>(sign | 0x7C00U); // rounds above 65504: infinity
        return h;
    }
    if (absx >= 0x38800000U)
    {
        // normal half: drop 13 mantissa bits with round-to-nearest-even
        uint32_t const mant = absx & 0x7FFFFFU;
        uint32_t const exponent = (absx >> 23) - 112U;
        uint32_t value = (exponent << 10) | (mant >> 13);
        uint32_t const rest = mant & 0x1FFFU;
        if (rest > 0x1000U || (rest == 0x1000U && (value & 1U)))
        {
            ++value; // may carry into the exponent, which is the correct rounding
        }
        h.bits = static_cast<uint16_t>(sign | value);
        return h;
    }
    if (absx < 0x33000000U)
    {
        h.bits = sign; // below half the smallest subnormal: zero
        return h;
    }
    // subnormal half: value = round(|f| / 2^-24)
    uint32_t const exponent = absx >> 23;
    uint32_t const mant = (absx & 0x7FFFFFU) | 0x800000U;
    uint32_t const shift = 126U - exponent; // 14 .. 24
    uint32_t value = mant >> shift;
    uint32_t const rest = mant & ((1U << shift) - 1U);
    uint32_t const half = 1U << (shift - 1U);
    if (rest > half || (rest == half && (value & 1U)))
    {
        ++value;
    }
    h.bits = static_cast<uint16_t>(sign | value);
    return h;
}

#endif // GAUSS_PSF_NOCUDA_FP16_H
