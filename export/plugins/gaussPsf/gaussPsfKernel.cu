/*
 * gaussPsfKernel.cu - CUDA kernels and launchers; one thread per pixel, the math is gaussPsfMath.h.
 */
#include "gaussPsfKernel.h"
#include "gaussPsfMath.h"

#include <climits>

namespace gausspsf
{
namespace
{

constexpr int kBlockX = 32;
constexpr int kBlockY = 8;
constexpr int kMaxGridZ = 65535;

template <typename T>
__global__ void forwardKernel(T const* __restrict__ image, T const* __restrict__ sigma, T* __restrict__ output,
    int32_t n, Geometry g)
{
    int const x = blockIdx.x * blockDim.x + threadIdx.x;
    int const y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= g.W || y >= g.H)
    {
        return;
    }
    int64_t const hw = static_cast<int64_t>(g.H) * g.W;
    for (int32_t b = blockIdx.z; b < n; b += gridDim.z)
    {
        forwardPixel(image + b * g.C * hw, sigma + b * hw, output + b * g.C * hw, g, y, x);
    }
}

__global__ void backwardPrepKernel(float const* __restrict__ image, float const* __restrict__ sigma,
    float const* __restrict__ gradOutput, float* __restrict__ invWeightSum, float* __restrict__ bTerm, int32_t n,
    Geometry g)
{
    int const x = blockIdx.x * blockDim.x + threadIdx.x;
    int const y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= g.W || y >= g.H)
    {
        return;
    }
    int64_t const hw = static_cast<int64_t>(g.H) * g.W;
    for (int32_t b = blockIdx.z; b < n; b += gridDim.z)
    {
        backwardPrepPixel(image + b * g.C * hw, sigma + b * hw, gradOutput + b * g.C * hw, invWeightSum + b * hw,
            bTerm + b * hw, g, y, x);
    }
}

__global__ void backwardKernel(float const* __restrict__ image, float const* __restrict__ sigma,
    float const* __restrict__ gradOutput, float const* __restrict__ invWeightSum, float const* __restrict__ bTerm,
    float* __restrict__ gradImage, float* __restrict__ gradSigma, int32_t n, Geometry g)
{
    int const x = blockIdx.x * blockDim.x + threadIdx.x;
    int const y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= g.W || y >= g.H)
    {
        return;
    }
    int64_t const hw = static_cast<int64_t>(g.H) * g.W;
    for (int32_t b = blockIdx.z; b < n; b += gridDim.z)
    {
        backwardPixel(image + b * g.C * hw, sigma + b * hw, gradOutput + b * g.C * hw, invWeightSum + b * hw,
            bTerm + b * hw, gradImage + b * g.C * hw, gradSigma + b * hw, g, y, x);
    }
}

//! Validates sizes; a per-item plane stack must be indexable with int (C * H * W < 2^31).
bool validSizes(int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius)
{
    if (n < 0 || c <= 0 || h <= 0 || w <= 0 || radius < 0 || radius > kMaxRadius)
    {
        return false;
    }
    return static_cast<int64_t>(c) * h * w <= static_cast<int64_t>(INT_MAX);
}

dim3 gridFor(int32_t n, int32_t h, int32_t w)
{
    return dim3((w + kBlockX - 1) / kBlockX, (h + kBlockY - 1) / kBlockY, n < kMaxGridZ ? n : kMaxGridZ);
}

template <typename T>
cudaError_t launchForward(T const* image, T const* sigma, T* output, int32_t n, int32_t c, int32_t h, int32_t w,
    int32_t radius, cudaStream_t stream)
{
    if (!validSizes(n, c, h, w, radius) || image == nullptr || sigma == nullptr || output == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    if (n == 0)
    {
        return cudaSuccess;
    }
    Geometry const g{c, h, w, radius};
    forwardKernel<T><<<gridFor(n, h, w), dim3(kBlockX, kBlockY), 0, stream>>>(image, sigma, output, n, g);
    return cudaGetLastError();
}

} // namespace

cudaError_t gaussPsfForward(float const* image, float const* sigma, float* output, int32_t n, int32_t c, int32_t h,
    int32_t w, int32_t radius, cudaStream_t stream)
{
    return launchForward(image, sigma, output, n, c, h, w, radius, stream);
}

cudaError_t gaussPsfForward(__half const* image, __half const* sigma, __half* output, int32_t n, int32_t c,
    int32_t h, int32_t w, int32_t radius, cudaStream_t stream)
{
    return launchForward(image, sigma, output, n, c, h, w, radius, stream);
}

size_t gaussPsfBackwardWorkspaceSize(int32_t n, int32_t h, int32_t w)
{
    if (n <= 0 || h <= 0 || w <= 0)
    {
        return 0;
    }
    size_t const plane = static_cast<size_t>(n) * h * w * sizeof(float);
    size_t const aligned = (plane + 255) / 256 * 256;
    return 2 * aligned;
}

cudaError_t gaussPsfBackward(float const* image, float const* sigma, float const* gradOutput, float* gradImage,
    float* gradSigma, void* workspace, int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius,
    cudaStream_t stream)
{
    if (!validSizes(n, c, h, w, radius) || image == nullptr || sigma == nullptr || gradOutput == nullptr
        || gradImage == nullptr || gradSigma == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    if (n == 0)
    {
        return cudaSuccess;
    }
    if (workspace == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    size_t const plane = static_cast<size_t>(n) * h * w * sizeof(float);
    size_t const aligned = (plane + 255) / 256 * 256;
    auto* invWeightSum = static_cast<float*>(workspace);
    auto* bTerm = reinterpret_cast<float*>(static_cast<char*>(workspace) + aligned);
    Geometry const g{c, h, w, radius};
    dim3 const grid = gridFor(n, h, w);
    dim3 const block(kBlockX, kBlockY);
    backwardPrepKernel<<<grid, block, 0, stream>>>(image, sigma, gradOutput, invWeightSum, bTerm, n, g);
    cudaError_t const status = cudaGetLastError();
    if (status != cudaSuccess)
    {
        return status;
    }
    backwardKernel<<<grid, block, 0, stream>>>(
        image, sigma, gradOutput, invWeightSum, bTerm, gradImage, gradSigma, n, g);
    return cudaGetLastError();
}

} // namespace gausspsf
