# rectifier_proto_library(<target> ROOT <dir> PROTOS <file>...)
# Generates C++ message and gRPC service code for PROTOS (paths relative to ROOT)
# into the build tree and builds them as a static library. Generated code is
# compiled without our warning flags.
function(rectifier_proto_library target)
  cmake_parse_arguments(ARG "" "ROOT" "PROTOS" ${ARGN})
  set(out_dir "${CMAKE_CURRENT_BINARY_DIR}/gen")
  file(MAKE_DIRECTORY "${out_dir}")
  set(srcs)
  foreach(proto IN LISTS ARG_PROTOS)
    get_filename_component(dir "${proto}" DIRECTORY)
    get_filename_component(stem "${proto}" NAME_WE)
    if(dir)
      set(base "${out_dir}/${dir}/${stem}")
    else()
      set(base "${out_dir}/${stem}")
    endif()
    set(gen "${base}.pb.cc" "${base}.pb.h" "${base}.grpc.pb.cc" "${base}.grpc.pb.h")
    add_custom_command(
      OUTPUT ${gen}
      COMMAND protobuf::protoc
        --cpp_out=${out_dir} --grpc_out=${out_dir}
        --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>
        -I ${ARG_ROOT} ${ARG_ROOT}/${proto}
      DEPENDS "${ARG_ROOT}/${proto}" protobuf::protoc gRPC::grpc_cpp_plugin
      COMMENT "protoc ${proto}"
      VERBATIM)
    list(APPEND srcs ${gen})
  endforeach()
  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} SYSTEM PUBLIC "${out_dir}")
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf gRPC::grpc++)
endfunction()
