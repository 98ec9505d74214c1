/*
 * gaussPsfPlugin.h - TensorRT 10 IPluginV3 "GaussPSF" (version "1", namespace ""): the gather-form
 * spatially varying Gaussian PSF of DAIF-Net (docs/ARCHITECTURE.md, model.render.gauss_psf).
 *
 * Inputs:  0 image (N, C, H, W), 1 sigma (N, 1, H, W) in pixels; both fp32 or both fp16, linear.
 * Output:  0 (N, C, H, W), same type as the image.
 * Fields:  radius (int32, 0..64): half size of the square window.
 *
 * The plugin class only validates, describes and dispatches; the kernels are in gaussPsfKernel.cu.
 */
#ifndef GAUSS_PSF_PLUGIN_H
#define GAUSS_PSF_PLUGIN_H

#include "NvInferRuntime.h"
#include "gaussPsfPluginCommon.h"

#include <cstdint>
#include <string>
#include <vector>

namespace gausspsf
{

constexpr char const* kPluginNamespace = "";

//! Reports an error through the TensorRT logger given to setLoggerFinder(), else to stderr.
void reportError(char const* where, char const* message) noexcept;

class GaussPsfPlugin : public nvinfer1::IPluginV3,
                       public nvinfer1::IPluginV3OneCore,
                       public nvinfer1::IPluginV3OneBuild,
                       public nvinfer1::IPluginV3OneRuntime
{
public:
    //! Throws std::invalid_argument if radius is outside [0, kMaxRadius].
    explicit GaussPsfPlugin(int32_t radius);
    GaussPsfPlugin(GaussPsfPlugin const& other);
    GaussPsfPlugin& operator=(GaussPsfPlugin const&) = delete;
    ~GaussPsfPlugin() override = default;

    int32_t radius() const noexcept
    {
        return mRadius;
    }

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    int32_t mRadius;
    std::vector<nvinfer1::PluginField> mFieldsToSerialize;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class GaussPsfPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    GaussPsfPluginCreator();
    ~GaussPsfPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    //! Needs field "radius" (int32 or int64, one value in [0, 64]); returns nullptr and reports otherwise.
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

} // namespace gausspsf

#endif // GAUSS_PSF_PLUGIN_H
