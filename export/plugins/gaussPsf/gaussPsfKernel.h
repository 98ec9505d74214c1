/*
 * gaussPsfKernel.h - CUDA launchers of the gather-form spatially varying Gaussian PSF.
 *
 * Tensors are dense NCHW device buffers: image and output (N, C, H, W), sigma (N, 1, H, W) in pixels.
 * Every launcher enqueues on `stream`, does not synchronise, and returns the launch status
 * (cudaErrorInvalidValue for bad sizes or a radius outside [0, gausspsf::kMaxRadius]).
 * The per-pixel math is in gaussPsfMath.h (shared with the CPU library gaussPsfHost.cpp).
 */
#ifndef GAUSS_PSF_KERNEL_H
#define GAUSS_PSF_KERNEL_H

#include <cstddef>
#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

namespace gausspsf
{

//! Forward, fp32 in/out.
cudaError_t gaussPsfForward(float const* image, float const* sigma, float* output, int32_t n, int32_t c, int32_t h,
    int32_t w, int32_t radius, cudaStream_t stream);

//! Forward, fp16 in/out, fp32 accumulation, output rounded to nearest.
cudaError_t gaussPsfForward(__half const* image, __half const* sigma, __half* output, int32_t n, int32_t c,
    int32_t h, int32_t w, int32_t radius, cudaStream_t stream);

//! Bytes of device workspace that gaussPsfBackward needs (two floats per pixel, 256-byte aligned).
size_t gaussPsfBackwardWorkspaceSize(int32_t n, int32_t h, int32_t w);

//! Backward, fp32: gradImage (N, C, H, W) and gradSigma (N, 1, H, W) are overwritten (not accumulated).
//! `workspace` holds at least gaussPsfBackwardWorkspaceSize(n, h, w) bytes.
cudaError_t gaussPsfBackward(float const* image, float const* sigma, float const* gradOutput, float* gradImage,
    float* gradSigma, void* workspace, int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius,
    cudaStream_t stream);

} // namespace gausspsf

#endif // GAUSS_PSF_KERNEL_H
