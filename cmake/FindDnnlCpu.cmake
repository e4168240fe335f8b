# Finds oneDNN's CPU library and headers and defines DNNL::dnnl.
# Debian's dnnl-config.cmake insists on OpenCL (its GPU runtime), which dropkit never uses, so
# we locate the library directly instead of pulling in OpenCL development packages.
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
find_library(DNNL_LIBRARY NAMES dnnl)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(DnnlCpu REQUIRED_VARS DNNL_LIBRARY DNNL_INCLUDE_DIR)
if(DnnlCpu_FOUND AND NOT TARGET DNNL::dnnl)
  add_library(DNNL::dnnl UNKNOWN IMPORTED)
  set_target_properties(DNNL::dnnl PROPERTIES IMPORTED_LOCATION "${DNNL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DNNL_INCLUDE_DIR}")
endif()
