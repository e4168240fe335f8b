# What `cmake --install` puts where (docs/install.md), and the Debian package cpack makes of it.
#
#   bin/dropkit                               the CLI
#   lib/libdropkit.a                          the library (static, position-independent)
#   lib/libdropkit_mpi.a                      its MPI process group (DROPKIT_WITH_MPI)
#   include/dropkit/...                       every header under src/dropkit, and version.h
#   lib/cmake/dropkit/                        dropkitConfig.cmake: targets dropkit::dropkit and
#                                             dropkit::dropkit_mpi
#   lib/pkgconfig/dropkit.pc                  pkg-config --cflags --libs dropkit
#   lib/python3/dist-packages/dropkit/        the Python package (DROPKIT_BUILD_PYTHON)
#
# ("lib" is CMAKE_INSTALL_LIBDIR: lib/x86_64-linux-gnu when the build is configured for /usr.)

set(dropkit_summary "dropout with reproducible masks: C++ library, CLI and Python package")

# --- Files ------------------------------------------------------------------------------------
install(TARGETS dropkit_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS dropkit EXPORT dropkitTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
if(DROPKIT_WITH_MPI)
  install(TARGETS dropkit_mpi EXPORT dropkitTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
set(DROPKIT_CONFIG_WITH_MPI ${DROPKIT_WITH_MPI})  # for dropkitConfig.cmake.in
# All headers: the public ones include most of the others.
install(DIRECTORY src/dropkit DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
install(FILES ${CMAKE_BINARY_DIR}/include/dropkit/version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dropkit)

if(DROPKIT_BUILD_PYTHON)
  # Debian's python3 reads /usr/lib/python3/dist-packages, which no multiarch libdir names.
  set(DROPKIT_INSTALL_PYTHONDIR lib/python3/dist-packages CACHE STRING
    "Where the Python package dropkit is installed, relative to the prefix")
  install(TARGETS dropkit_python LIBRARY DESTINATION ${DROPKIT_INSTALL_PYTHONDIR}/dropkit)
  list(TRANSFORM dropkit_python_files PREPEND python/dropkit/ OUTPUT_VARIABLE dropkit_python_src)
  install(FILES ${dropkit_python_src} DESTINATION ${DROPKIT_INSTALL_PYTHONDIR}/dropkit)
endif()

# --- find_package(dropkit) --------------------------------------------------------------------
# The exported static library names its private dependencies ($<LINK_ONLY:...>), so the config
# finds them all again; oneDNN through our FindDnnlCpu.cmake, installed beside it.
include(CMakePackageConfigHelpers)
set(dropkit_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/dropkit)
install(EXPORT dropkitTargets NAMESPACE dropkit:: DESTINATION ${dropkit_cmake_dir})
configure_package_config_file(cmake/dropkitConfig.cmake.in
  ${CMAKE_BINARY_DIR}/dropkitConfig.cmake INSTALL_DESTINATION ${dropkit_cmake_dir})
# 0.x: a minor version may change the API.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/dropkitConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/dropkitConfig.cmake
  ${CMAKE_BINARY_DIR}/dropkitConfigVersion.cmake cmake/FindDnnlCpu.cmake
  DESTINATION ${dropkit_cmake_dir})

# --- pkg-config ---------------------------------------------------------------------------------
# The prefix is found from the .pc file's own place, so an install moved elsewhere (cmake
# --install --prefix, dpkg-deb -x) still works.
file(RELATIVE_PATH dropkit_pc_prefix /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
string(REGEX REPLACE "/$" "" dropkit_pc_prefix "${dropkit_pc_prefix}")
configure_file(cmake/dropkit.pc.in ${CMAKE_BINARY_DIR}/dropkit.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/dropkit.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# --- Debian package (cpack) -----------------------------------------------------------------
# One package with everything above, under /usr. Run-time libraries come from dpkg-shlibdeps
# (the CLI and the Python module); the -dev packages are what a program built against the static
# library and its headers needs too.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_CONTACT "dropkit maintainers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY ${dropkit_summary})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(dropkit_deb_depends libdnnl-dev zlib1g-dev libfmt-dev nlohmann-json3-dev)
if(DROPKIT_WITH_MPI)
  list(APPEND dropkit_deb_depends libopenmpi-dev openmpi-bin)
endif()
if(DROPKIT_BUILD_PYTHON)
  # The module is built for one CPython (e.g. _core.cpython-311-x86_64-linux-gnu.so).
  math(EXPR dropkit_python_next "${Python_VERSION_MINOR} + 1")
  list(APPEND dropkit_deb_depends "python3 (>= ${Python_VERSION_MAJOR}.${Python_VERSION_MINOR})"
    "python3 (<< ${Python_VERSION_MAJOR}.${dropkit_python_next})" python3-numpy)
  set(CPACK_DEBIAN_PACKAGE_SUGGESTS python3-torch)
endif()
list(JOIN dropkit_deb_depends ", " CPACK_DEBIAN_PACKAGE_DEPENDS)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "g++, cmake, pkg-config")
include(CPack)
