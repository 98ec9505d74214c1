/*
 * gaussPsfHost.h - C ABI of libgausspsf_host.so: the gather-form Gaussian PSF on the CPU.
 *
 * The library runs the per-pixel functions of gaussPsfMath.h (the code the CUDA kernels run) on
 * the host; it needs no CUDA runtime or driver to load. Used by tests (via ctypes) and as a
 * CPU reference. Buffers are dense, C-contiguous NCHW host arrays:
 *   image/output/gradImage (N, C, H, W), sigma/gradSigma (N, 1, H, W), sigma in pixels.
 * Every function returns 0 on success and a non-zero code on error; gpsf_host_last_error() then
 * describes the error (thread-local, valid until the next call on the same thread).
 */
#ifndef GAUSS_PSF_HOST_H
#define GAUSS_PSF_HOST_H

#include <stdint.h>

#if defined(_WIN32)
#define GPSF_HOST_API __declspec(dllexport)
#else
#define GPSF_HOST_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C"
{
#endif

//! Error codes.
enum
{
    GPSF_HOST_OK = 0,
    GPSF_HOST_INVALID_ARGUMENT = 1,
    GPSF_HOST_INTERNAL_ERROR = 2
};

//! ABI version of this library (bumped on any signature change).
GPSF_HOST_API int32_t gpsf_host_abi_version(void);

//! Largest radius accepted (gausspsf::kMaxRadius).
GPSF_HOST_API int32_t gpsf_host_max_radius(void);

//! Description of the last error on this thread ("" if none).
GPSF_HOST_API char const* gpsf_host_last_error(void);

//! Forward, fp32.
GPSF_HOST_API int32_t gpsf_host_forward_f32(float const* image, float const* sigma, float* output, int32_t n,
    int32_t c, int32_t h, int32_t w, int32_t radius);

//! Forward, fp16 storage (IEEE binary16 bit patterns), fp32 accumulation: emulates the fp16 CUDA path.
GPSF_HOST_API int32_t gpsf_host_forward_f16(uint16_t const* image, uint16_t const* sigma, uint16_t* output,
    int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius);

//! Backward, fp32: overwrites gradImage (N, C, H, W) and gradSigma (N, 1, H, W).
GPSF_HOST_API int32_t gpsf_host_backward_f32(float const* image, float const* sigma, float const* gradOutput,
    float* gradImage, float* gradSigma, int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius);

#ifdef __cplusplus
}
#endif

#endif // GAUSS_PSF_HOST_H
