/*
 * gaussPsfPluginCommon.h - checks shared by the TensorRT 10 (IPluginV3) and TensorRT 8.5
 * (IPluginV2DynamicExt) variants of GaussPSF. They throw std::invalid_argument; the plugin entry
 * points catch and report. Works with either Dims element type (int32 in TensorRT 8, int64 in 10).
 */
#ifndef GAUSS_PSF_PLUGIN_COMMON_H
#define GAUSS_PSF_PLUGIN_COMMON_H

#include "NvInferRuntime.h"
#include "gaussPsfMath.h"

#include <cstdint>
#include <stdexcept>
#include <string>

namespace gausspsf
{

constexpr char const* kPluginName = "GaussPSF";
constexpr char const* kPluginVersion = "1";
constexpr char const* kRadiusField = "radius";
constexpr int32_t kNbInputs = 2;
constexpr int32_t kNbOutputs = 1;
constexpr int32_t kRank = 4;

inline void checkRadius(int32_t radius)
{
    if (radius < 0 || radius > kMaxRadius)
    {
        throw std::invalid_argument(
            "radius must be in [0, " + std::to_string(kMaxRadius) + "], got " + std::to_string(radius));
    }
}

inline void checkCounts(int32_t nbInputs, int32_t nbOutputs)
{
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs)
    {
        throw std::invalid_argument("expects 2 inputs (image, sigma) and 1 output, got " + std::to_string(nbInputs)
            + " inputs and " + std::to_string(nbOutputs) + " outputs");
    }
}

//! Checks image (N, C, H, W) against sigma (N, 1, H, W); dimensions < 0 (unknown at build time) are skipped.
inline void checkShapes(nvinfer1::Dims const& image, nvinfer1::Dims const& sigma)
{
    if (image.nbDims != kRank || sigma.nbDims != kRank)
    {
        throw std::invalid_argument("image and sigma must be 4-D (N, C, H, W) and (N, 1, H, W), got ranks "
            + std::to_string(image.nbDims) + " and " + std::to_string(sigma.nbDims));
    }
    if (sigma.d[1] >= 0 && sigma.d[1] != 1)
    {
        throw std::invalid_argument("sigma must have 1 channel, got " + std::to_string(sigma.d[1]));
    }
    for (int32_t i : {0, 2, 3})
    {
        if (image.d[i] >= 0 && sigma.d[i] >= 0 && image.d[i] != sigma.d[i])
        {
            throw std::invalid_argument("image and sigma differ in dimension " + std::to_string(i) + ": "
                + std::to_string(image.d[i]) + " vs " + std::to_string(sigma.d[i]));
        }
    }
}

//! Concrete (N, C, H, W) of an image at enqueue time, each in [0, INT32_MAX].
struct ConcreteShape
{
    int32_t n;
    int32_t c;
    int32_t h;
    int32_t w;
};

inline ConcreteShape concreteShape(nvinfer1::Dims const& image, nvinfer1::Dims const& sigma)
{
    checkShapes(image, sigma);
    int32_t v[kRank];
    for (int32_t i = 0; i < kRank; ++i)
    {
        auto const d = static_cast<int64_t>(image.d[i]);
        if (d < 0 || d > INT32_MAX)
        {
            throw std::invalid_argument("dimension " + std::to_string(i) + " out of range: " + std::to_string(d));
        }
        v[i] = static_cast<int32_t>(d);
    }
    return ConcreteShape{v[0], v[1], v[2], v[3]};
}

inline bool isSupportedType(nvinfer1::DataType type)
{
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
}

//! Reads one integer field (INT32, or INT64 where TensorRT has it) into a checked int32.
inline int32_t readIntField(nvinfer1::PluginField const& field)
{
    std::string const name = field.name != nullptr ? field.name : "?";
    if (field.data == nullptr || field.length != 1)
    {
        throw std::invalid_argument("field '" + name + "' must hold exactly one value");
    }
    int64_t value = 0;
    if (field.type == nvinfer1::PluginFieldType::kINT32)
    {
        value = *static_cast<int32_t const*>(field.data);
    }
#if NV_TENSORRT_MAJOR >= 10
    else if (field.type == nvinfer1::PluginFieldType::kINT64)
    {
        value = *static_cast<int64_t const*>(field.data);
    }
#endif
    else
    {
        throw std::invalid_argument("field '" + name + "' must be INT32 (or INT64)");
    }
    if (value < INT32_MIN || value > INT32_MAX)
    {
        throw std::invalid_argument("field '" + name + "' is out of the int32 range");
    }
    return static_cast<int32_t>(value);
}

//! The radius from a creator's field collection; throws if absent or invalid.
inline int32_t radiusFromFields(nvinfer1::PluginFieldCollection const* fc)
{
    if (fc == nullptr || (fc->nbFields > 0 && fc->fields == nullptr))
    {
        throw std::invalid_argument("no plugin fields given; field 'radius' is required");
    }
    bool haveRadius = false;
    int32_t radius = 0;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        nvinfer1::PluginField const& field = fc->fields[i];
        if (field.name != nullptr && std::string(field.name) == kRadiusField)
        {
            radius = readIntField(field);
            haveRadius = true;
        }
    }
    if (!haveRadius)
    {
        throw std::invalid_argument("field 'radius' is required");
    }
    checkRadius(radius);
    return radius;
}

} // namespace gausspsf

#endif // GAUSS_PSF_PLUGIN_COMMON_H
