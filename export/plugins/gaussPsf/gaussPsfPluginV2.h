/*
 * gaussPsfPluginV2.h - GaussPSF as an IPluginV2DynamicExt, for TensorRT 8.5 (JetPack 5).
 *
 * Same name ("GaussPSF"), version ("1"), inputs, output and `radius` field as the IPluginV3 plugin
 * (gaussPsfPlugin.h), so one ONNX model serves JetPack 5 and 6. The creator registers itself when the
 * library is loaded (REGISTER_TENSORRT_PLUGIN: `trtexec --plugins=libgausspsf_trt8.so`, or
 * ctypes.CDLL after `import tensorrt`). Serialized data: the radius as one little-endian int32.
 * The class holds no kernel code (gaussPsfKernel.cu).
 */
#ifndef GAUSS_PSF_PLUGIN_V2_H
#define GAUSS_PSF_PLUGIN_V2_H

#include "NvInferRuntime.h"

#include <cstdint>
#include <string>
#include <vector>

namespace gausspsf
{

class GaussPsfPluginV2 : public nvinfer1::IPluginV2DynamicExt
{
public:
    //! Throws std::invalid_argument if radius is outside [0, kMaxRadius].
    explicit GaussPsfPluginV2(int32_t radius);
    //! From serialized data; throws std::invalid_argument if it is not one valid int32 radius.
    GaussPsfPluginV2(void const* data, size_t length);
    ~GaussPsfPluginV2() override = default;

    // IPluginV2
    char const* getPluginType() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t initialize() noexcept override;
    void terminate() noexcept override;
    size_t getSerializationSize() const noexcept override;
    void serialize(void* buffer) const noexcept override;
    void destroy() noexcept override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV2Ext
    nvinfer1::DataType getOutputDataType(
        int32_t index, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;

    // IPluginV2DynamicExt
    nvinfer1::IPluginV2DynamicExt* clone() const noexcept override;
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(
        int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override;
    void configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::PluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

private:
    int32_t mRadius;
    std::string mNamespace;
};

class GaussPsfPluginV2Creator : public nvinfer1::IPluginCreator
{
public:
    GaussPsfPluginV2Creator();
    ~GaussPsfPluginV2Creator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV2* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc) noexcept override;
    nvinfer1::IPluginV2* deserializePlugin(
        char const* name, void const* serialData, size_t serialLength) noexcept override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
    std::string mNamespace;
};

} // namespace gausspsf

#endif // GAUSS_PSF_PLUGIN_V2_H
