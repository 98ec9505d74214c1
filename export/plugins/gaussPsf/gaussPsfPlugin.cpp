/*
 * gaussPsfPlugin.cpp - the GaussPSF IPluginV3 plugin, its creator and the library entry points.
 */
#include "gaussPsfPlugin.h"
#include "gaussPsfKernel.h"
#include "gaussPsfMath.h"
#include "gaussPsfPluginCommon.h"

#include <atomic>
#include <climits>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

#if defined(_WIN32)
#define GPSF_PLUGIN_API __declspec(dllexport)
#else
#define GPSF_PLUGIN_API __attribute__((visibility("default")))
#endif

using namespace nvinfer1;

namespace gausspsf
{
namespace
{

std::atomic<ILoggerFinder*> gLoggerFinder{nullptr};

} // namespace

void reportError(char const* where, char const* message) noexcept
{
    try
    {
        std::string const text = std::string(kPluginName) + "::" + where + ": " + message;
        ILoggerFinder* finder = gLoggerFinder.load();
        ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
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

// ---------------------------------------------------------------------------------------------------------------
// GaussPsfPlugin

GaussPsfPlugin::GaussPsfPlugin(int32_t radius)
    : mRadius(radius)
{
    checkRadius(radius);
}

GaussPsfPlugin::GaussPsfPlugin(GaussPsfPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mRadius(other.mRadius)
{
    // mFieldsToSerialize points at this object's members: rebuilt by getFieldsToSerialize(), never copied.
}

IPluginCapability* GaussPsfPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    try
    {
        switch (type)
        {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        throw std::invalid_argument("unknown capability type " + std::to_string(static_cast<int32_t>(type)));
    }
    catch (std::exception const& e)
    {
        reportError("getCapabilityInterface", e.what());
    }
    return nullptr;
}

IPluginV3* GaussPsfPlugin::clone() noexcept
{
    try
    {
        return new GaussPsfPlugin(*this);
    }
    catch (std::exception const& e)
    {
        reportError("clone", e.what());
    }
    return nullptr;
}

char const* GaussPsfPlugin::getPluginName() const noexcept
{
    return kPluginName;
}

char const* GaussPsfPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* GaussPsfPlugin::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

int32_t GaussPsfPlugin::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

int32_t GaussPsfPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        checkCounts(nbInputs, nbOutputs);
        if (!isSupportedType(inputTypes[0]))
        {
            throw std::invalid_argument("image must be FLOAT or HALF");
        }
        outputTypes[0] = inputTypes[0];
        return 0;
    }
    catch (std::exception const& e)
    {
        reportError("getOutputDataTypes", e.what());
    }
    return -1;
}

int32_t GaussPsfPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept
{
    try
    {
        checkCounts(nbInputs, nbOutputs);
        if (inputs[0].nbDims != kRank || inputs[1].nbDims != kRank)
        {
            throw std::invalid_argument("image and sigma must be 4-D (N, C, H, W) and (N, 1, H, W)");
        }
        outputs[0] = inputs[0];
        return 0;
    }
    catch (std::exception const& e)
    {
        reportError("getOutputShapes", e.what());
    }
    return -1;
}

bool GaussPsfPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    try
    {
        checkCounts(nbInputs, nbOutputs);
        if (pos < 0 || pos >= kNbInputs + kNbOutputs)
        {
            throw std::invalid_argument("position " + std::to_string(pos) + " out of range");
        }
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR)
        {
            return false;
        }
        if (pos == 0)
        {
            return isSupportedType(desc.type);
        }
        return desc.type == inOut[0].desc.type;
    }
    catch (std::exception const& e)
    {
        reportError("supportsFormatCombination", e.what());
    }
    return false;
}

int32_t GaussPsfPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    try
    {
        checkCounts(nbInputs, nbOutputs);
        checkShapes(in[0].desc.dims, in[1].desc.dims);
        return 0;
    }
    catch (std::exception const& e)
    {
        reportError("configurePlugin", e.what());
    }
    return -1;
}

size_t GaussPsfPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0;
}

int32_t GaussPsfPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    try
    {
        checkCounts(nbInputs, nbOutputs);
        checkShapes(in[0].dims, in[1].dims);
        return 0;
    }
    catch (std::exception const& e)
    {
        reportError("onShapeChange", e.what());
    }
    return -1;
}

int32_t GaussPsfPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    try
    {
        ConcreteShape const shape = concreteShape(inputDesc[0].dims, inputDesc[1].dims);
        auto const n = shape.n;
        auto const c = shape.c;
        auto const h = shape.h;
        auto const w = shape.w;
        cudaError_t status = cudaErrorInvalidValue;
        if (inputDesc[0].type == DataType::kFLOAT)
        {
            status = gaussPsfForward(static_cast<float const*>(inputs[0]), static_cast<float const*>(inputs[1]),
                static_cast<float*>(outputs[0]), n, c, h, w, mRadius, stream);
        }
        else if (inputDesc[0].type == DataType::kHALF)
        {
            status = gaussPsfForward(static_cast<__half const*>(inputs[0]), static_cast<__half const*>(inputs[1]),
                static_cast<__half*>(outputs[0]), n, c, h, w, mRadius, stream);
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
        reportError("enqueue", e.what());
    }
    return -1;
}

IPluginV3* GaussPsfPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* GaussPsfPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mFieldsToSerialize.clear();
        mFieldsToSerialize.emplace_back(kRadiusField, &mRadius, PluginFieldType::kINT32, 1);
        mFieldCollection.nbFields = static_cast<int32_t>(mFieldsToSerialize.size());
        mFieldCollection.fields = mFieldsToSerialize.data();
        return &mFieldCollection;
    }
    catch (std::exception const& e)
    {
        reportError("getFieldsToSerialize", e.what());
    }
    return nullptr;
}

// ---------------------------------------------------------------------------------------------------------------
// GaussPsfPluginCreator

GaussPsfPluginCreator::GaussPsfPluginCreator()
{
    mFieldNames.emplace_back(kRadiusField, nullptr, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* GaussPsfPluginCreator::getPluginName() const noexcept
{
    return kPluginName;
}

char const* GaussPsfPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* GaussPsfPluginCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

PluginFieldCollection const* GaussPsfPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* GaussPsfPluginCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        int32_t const radius = radiusFromFields(fc);
        return new GaussPsfPlugin(radius);
    }
    catch (std::exception const& e)
    {
        reportError("createPlugin", e.what());
    }
    return nullptr;
}

} // namespace gausspsf

// ---------------------------------------------------------------------------------------------------------------
// Library entry points (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins, trt.get_plugin_registry().load_library)

extern "C" GPSF_PLUGIN_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    gausspsf::gLoggerFinder.store(finder);
}

extern "C" GPSF_PLUGIN_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static gausspsf::GaussPsfPluginCreator creator;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
}
