/*
 * gaussPsfHost.cpp - CPU implementation of the C ABI in gaussPsfHost.h.
 *
 * Loops over pixels and calls the same per-pixel functions (gaussPsfMath.h) as the CUDA kernels,
 * in the same order, so results agree with the GPU up to expf/FMA rounding.
 */
#include "gaussPsfHost.h"
#include "gaussPsfMath.h"

#include <climits>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace
{

thread_local std::string tLastError;

int32_t fail(std::string const& message)
{
    tLastError = message;
    return GPSF_HOST_INVALID_ARGUMENT;
}

//! Returns an error message for bad sizes, or an empty string.
std::string checkSizes(int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius)
{
    if (n < 0 || c <= 0 || h <= 0 || w <= 0)
    {
        return "sizes must be N >= 0 and C, H, W > 0, got N=" + std::to_string(n) + " C=" + std::to_string(c)
            + " H=" + std::to_string(h) + " W=" + std::to_string(w);
    }
    if (radius < 0 || radius > gausspsf::kMaxRadius)
    {
        return "radius must be in [0, " + std::to_string(gausspsf::kMaxRadius) + "], got " + std::to_string(radius);
    }
    if (static_cast<int64_t>(c) * h * w > static_cast<int64_t>(INT_MAX))
    {
        return "C * H * W must be < 2^31";
    }
    return {};
}

template <typename T>
int32_t forward(T const* image, T const* sigma, T* output, int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius)
{
    std::string const error = checkSizes(n, c, h, w, radius);
    if (!error.empty())
    {
        return fail(error);
    }
    if (n > 0 && (image == nullptr || sigma == nullptr || output == nullptr))
    {
        return fail("null buffer");
    }
    gausspsf::Geometry const g{c, h, w, radius};
    int64_t const hw = static_cast<int64_t>(h) * w;
    for (int64_t b = 0; b < n; ++b)
    {
        for (int y = 0; y < h; ++y)
        {
            for (int x = 0; x < w; ++x)
            {
                gausspsf::forwardPixel(image + b * c * hw, sigma + b * hw, output + b * c * hw, g, y, x);
            }
        }
    }
    tLastError.clear();
    return GPSF_HOST_OK;
}

} // namespace

extern "C"
{

int32_t gpsf_host_abi_version(void)
{
    return 1;
}

int32_t gpsf_host_max_radius(void)
{
    return gausspsf::kMaxRadius;
}

char const* gpsf_host_last_error(void)
{
    return tLastError.c_str();
}

int32_t gpsf_host_forward_f32(
    float const* image, float const* sigma, float* output, int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius)
{
    try
    {
        return forward(image, sigma, output, n, c, h, w, radius);
    }
    catch (std::exception const& e)
    {
        tLastError = e.what();
        return GPSF_HOST_INTERNAL_ERROR;
    }
}

int32_t gpsf_host_forward_f16(uint16_t const* image, uint16_t const* sigma, uint16_t* output, int32_t n, int32_t c,
    int32_t h, int32_t w, int32_t radius)
{
    static_assert(sizeof(__half) == sizeof(uint16_t), "__half must be 16 bits");
    try
    {
        // __half is a standard-layout wrapper of the binary16 bits: the buffers are reinterpreted in place.
        return forward(reinterpret_cast<__half const*>(image), reinterpret_cast<__half const*>(sigma),
            reinterpret_cast<__half*>(output), n, c, h, w, radius);
    }
    catch (std::exception const& e)
    {
        tLastError = e.what();
        return GPSF_HOST_INTERNAL_ERROR;
    }
}

int32_t gpsf_host_backward_f32(float const* image, float const* sigma, float const* gradOutput, float* gradImage,
    float* gradSigma, int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius)
{
    try
    {
        std::string const error = checkSizes(n, c, h, w, radius);
        if (!error.empty())
        {
            return fail(error);
        }
        if (n > 0
            && (image == nullptr || sigma == nullptr || gradOutput == nullptr || gradImage == nullptr
                || gradSigma == nullptr))
        {
            return fail("null buffer");
        }
        gausspsf::Geometry const g{c, h, w, radius};
        int64_t const hw = static_cast<int64_t>(h) * w;
        std::vector<float> invWeightSum(static_cast<size_t>(hw));
        std::vector<float> bTerm(static_cast<size_t>(hw));
        for (int64_t b = 0; b < n; ++b)
        {
            float const* img = image + b * c * hw;
            float const* sig = sigma + b * hw;
            float const* gout = gradOutput + b * c * hw;
            for (int y = 0; y < h; ++y)
            {
                for (int x = 0; x < w; ++x)
                {
                    gausspsf::backwardPrepPixel(img, sig, gout, invWeightSum.data(), bTerm.data(), g, y, x);
                }
            }
            for (int y = 0; y < h; ++y)
            {
                for (int x = 0; x < w; ++x)
                {
                    gausspsf::backwardPixel(img, sig, gout, invWeightSum.data(), bTerm.data(),
                        gradImage + b * c * hw, gradSigma + b * hw, g, y, x);
                }
            }
        }
        tLastError.clear();
        return GPSF_HOST_OK;
    }
    catch (std::exception const& e)
    {
        tLastError = e.what();
        return GPSF_HOST_INTERNAL_ERROR;
    }
}

} // extern "C"
