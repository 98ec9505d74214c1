/*
 * gaussPsfPluginV2.cpp - the GaussPSF IPluginV2DynamicExt (TensorRT 8.5, JetPack 5) and its creator.
 */
#include "gaussPsfPluginV2.h"
#include "gaussPsfKernel.h"
#include "gaussPsfPluginCommon.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

using namespace nvinfer1;

namespace gausspsf
{
namespace
{

//! Reports through TensorRT's global logger (getLogger(), libnvinfer), else stderr.
void reportErrorV2(char const* where, char const* message) noexcept
{
    try
    {
        std::string const text = std::string(kPluginName) + "::" + where + ": " + message;
        ILogger* logger = getLogger();
        if (logger != nullptr)
        {
            logger->log(ILogger::Severity::kERROR, text.c_str());
        }
        else
        {
            std::fprintf(stderr, "[TensorRT plugin] ERROR: %s\n", text.c_str());
        }
    }
    catch (...)
    {
        std::fprintf(stderr, "[TensorRT plugin] ERROR: GaussPSF: failed to report an error\n");
    }
}

} // namespace

// ---------------------------------------------------------------------------------------------------------------
// GaussPsfPluginV2

GaussPsfPluginV2::GaussPsfPluginV2(int32_t radius)
    : mRadius(radius)
{
    checkRadius(radius);
}

GaussPsfPluginV2::GaussPsfPluginV2(void const* data, size_t length)
    : mRadius(0)
{
    if (data == nullptr || length != sizeof(int32_t))
    {
        throw std::invalid_argument("serialized GaussPSF data must be one int32 (4 bytes), got "
            + std::to_string(length) + " bytes");
    }
    std::memcpy(&mRadius, data, sizeof(int32_t));
    checkRadius(mRadius);
}

char const* GaussPsfPluginV2::getPluginType() const noexcept
{
    return kPluginName;
}

char const* GaussPsfPluginV2::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

int32_t GaussPsfPluginV2::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

int32_t GaussPsfPluginV2::initialize() noexcept
{
    return 0;
}

void GaussPsfPluginV2::terminate() noexcept {}

size_t GaussPsfPluginV2::getSerializationSize() const noexcept
{
    return sizeof(int32_t);
}

void GaussPsfPluginV2::serialize(void* buffer) const noexcept
{
    if (buffer != nullptr)
    {
        std::memcpy(buffer, &mRadius, sizeof(int32_t));
    }
}

void GaussPsfPluginV2::destroy() noexcept
{
    delete this;
}

void GaussPsfPluginV2::setPluginNamespace(char const* pluginNamespace) noexcept
{
    try
    {
        mNamespace = pluginNamespace != nullptr ? pluginNamespace : "";
    }
    catch (std::exception const& e)
    {
        reportErrorV2("setPluginNamespace", e.what());
    }
}

char const* GaussPsfPluginV2::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

DataType GaussPsfPluginV2::getOutputDataType(int32_t index, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        checkCounts(nbInputs, index + 1);
        if (!isSupportedType(inputTypes[0]))
        {
            throw std::invalid_argument("image must be FLOAT or HALF");
        }
        return inputTypes[0];
    }
    catch (std::exception const& e)
    {
        reportErrorV2("getOutputDataType", e.what());
    }
    return DataType::kFLOAT;
}

IPluginV2DynamicExt* GaussPsfPluginV2::clone() const noexcept
{
    try
    {
        auto* plugin = new GaussPsfPluginV2(mRadius);
        plugin->setPluginNamespace(mNamespace.c_str());
        return plugin;
    }
    catch (std::exception const& e)
    {
        reportErrorV2("clone", e.what());
    }
    return nullptr;
}

DimsExprs GaussPsfPluginV2::getOutputDimensions(
    int32_t outputIndex, DimsExprs const* inputs, int32_t nbInputs, IExprBuilder& /*exprBuilder*/) noexcept
{
    try
    {
        checkCounts(nbInputs, outputIndex + 1);
        if (inputs[0].nbDims != kRank || inputs[1].nbDims != kRank)
        {
            throw std::invalid_argument("image and sigma must be 4-D (N, C, H, W) and (N, 1, H, W)");
        }
        return inputs[0];
    }
    catch (std::exception const& e)
    {
        reportErrorV2("getOutputDimensions", e.what());
    }
    return DimsExprs{};
}

bool GaussPsfPluginV2::supportsFormatCombination(
    int32_t pos, PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    try
    {
        checkCounts(nbInputs, nbOutputs);
        if (pos < 0 || pos >= kNbInputs + kNbOutputs)
        {
            throw std::invalid_argument("position " + std::to_string(pos) + " out of range");
        }
        if (inOut[pos].format != TensorFormat::kLINEAR)
        {
            return false;
        }
        return pos == 0 ? isSupportedType(inOut[0].type) : inOut[pos].type == inOut[0].type;
    }
    catch (std::exception const& e)
    {
        reportErrorV2("supportsFormatCombination", e.what());
    }
    return false;
}

void GaussPsfPluginV2::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    try
    {
        checkCounts(nbInputs, nbOutputs);
        checkShapes(in[0].desc.dims, in[1].desc.dims);
    }
    catch (std::exception const& e)
    {
        reportErrorV2("configurePlugin", e.what());
    }
}

size_t GaussPsfPluginV2::getWorkspaceSize(PluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    PluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0;
}

int32_t GaussPsfPluginV2::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    try
    {
        ConcreteShape const s = concreteShape(inputDesc[0].dims, inputDesc[1].dims);
        cudaError_t status = cudaErrorInvalidValue;
        if (inputDesc[0].type == DataType::kFLOAT)
        {
            status = gaussPsfForward(static_cast<float const*>(inputs[0]), static_cast<float const*>(inputs[1]),
                static_cast<float*>(outputs[0]), s.n, s.c, s.h, s.w, mRadius, stream);
        }
        else if (inputDesc[0].type == DataType::kHALF)
        {
            status = gaussPsfForward(static_cast<__half const*>(inputs[0]), static_cast<__half const*>(inputs[1]),
                static_cast<__half*>(outputs[0]), s.n, s.c, s.h, s.w, mRadius, stream);
        }
        else
        {
            throw std::invalid_argument("unsupported data type");
        }
        if (status != cudaSuccess)
        {
            throw std::runtime_error(std::string("kernel launch failed: ") + cudaGetErrorString(status));
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        reportErrorV2("enqueue", e.what());
    }
    return -1;
}

// ---------------------------------------------------------------------------------------------------------------
// GaussPsfPluginV2Creator

GaussPsfPluginV2Creator::GaussPsfPluginV2Creator()
{
    mFieldNames.emplace_back(kRadiusField, nullptr, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* GaussPsfPluginV2Creator::getPluginName() const noexcept
{
    return kPluginName;
}

char const* GaussPsfPluginV2Creator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

PluginFieldCollection const* GaussPsfPluginV2Creator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV2* GaussPsfPluginV2Creator::createPlugin(char const* /*name*/, PluginFieldCollection const* fc) noexcept
{
    try
    {
        auto* plugin = new GaussPsfPluginV2(radiusFromFields(fc));
        plugin->setPluginNamespace(mNamespace.c_str());
        return plugin;
    }
    catch (std::exception const& e)
    {
        reportErrorV2("createPlugin", e.what());
    }
    return nullptr;
}

IPluginV2* GaussPsfPluginV2Creator::deserializePlugin(
    char const* /*name*/, void const* serialData, size_t serialLength) noexcept
{
    try
    {
        auto* plugin = new GaussPsfPluginV2(serialData, serialLength);
        plugin->setPluginNamespace(mNamespace.c_str());
        return plugin;
    }
    catch (std::exception const& e)
    {
        reportErrorV2("deserializePlugin", e.what());
    }
    return nullptr;
}

void GaussPsfPluginV2Creator::setPluginNamespace(char const* pluginNamespace) noexcept
{
    try
    {
        mNamespace = pluginNamespace != nullptr ? pluginNamespace : "";
    }
    catch (std::exception const& e)
    {
        reportErrorV2("setPluginNamespace", e.what());
    }
}

char const* GaussPsfPluginV2Creator::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

REGISTER_TENSORRT_PLUGIN(GaussPsfPluginV2Creator);

} // namespace gausspsf
