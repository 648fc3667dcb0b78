# Install layout for a system service and the Debian package (CPack DEB).
#
#   cmake --install build --prefix /usr          # or: cpack --config build/CPackConfig.cmake
#
# puts the binary in bin/, the unit, sysusers.d and tmpfiles.d snippets under
# lib/ (with prefix /usr: /usr/lib/systemd/system/basewatch.service, ...), the
# man page, docs and example config under share/, and the config in
# /etc/basewatch/config.yaml (prefix/etc/basewatch when the prefix is not
# /usr; an existing config is never overwritten by `cmake --install`). The
# .deb marks it a conffile and depends on the Debian runtime libraries that
# dpkg-shlibdeps finds.

set(BASEWATCH_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "Where the unit goes, relative to the prefix (or absolute)")
set(BASEWATCH_SYSUSERSDIR "lib/sysusers.d" CACHE STRING "sysusers.d folder, relative to the prefix")
set(BASEWATCH_TMPFILESDIR "lib/tmpfiles.d" CACHE STRING "tmpfiles.d folder, relative to the prefix")

set(_bw_src ${PROJECT_SOURCE_DIR})
install(FILES ${_bw_src}/systemd/basewatch.sysusers DESTINATION ${BASEWATCH_SYSUSERSDIR} RENAME basewatch.conf)
install(FILES ${_bw_src}/systemd/basewatch.tmpfiles DESTINATION ${BASEWATCH_TMPFILESDIR} RENAME basewatch.conf)
install(FILES ${_bw_src}/docs/basewatch.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${_bw_src}/systemd/config.yaml DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME config.yaml.example)
install(FILES ${_bw_src}/systemd/basewatch-builds.conf.example ${_bw_src}/docs/configuration.md ${_bw_src}/README.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# /etc is decided when installing, not when configuring: CPack installs
# with the prefix /usr whatever the build was configured with.
install(CODE "
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(_bw_etc \"/etc/basewatch\")
  else()
    set(_bw_etc \"\${CMAKE_INSTALL_PREFIX}/etc/basewatch\")
  endif()
  # The unit names the installed binary and config: as shipped for /usr,
  # rewritten for another prefix (/usr/local/bin/basewatch, ...).
  file(READ \"${_bw_src}/systemd/basewatch.service\" _bw_unit)
  string(REPLACE \"/usr/bin/basewatch\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/basewatch\" _bw_unit \"\${_bw_unit}\")
  string(REPLACE \"/etc/basewatch/config.yaml\" \"\${_bw_etc}/config.yaml\" _bw_unit \"\${_bw_unit}\")
  set(_bw_unitdir \"${BASEWATCH_SYSTEMD_UNITDIR}\")
  if(NOT IS_ABSOLUTE \"\${_bw_unitdir}\")
    set(_bw_unitdir \"\${CMAKE_INSTALL_PREFIX}/\${_bw_unitdir}\")
  endif()
  file(WRITE \"${PROJECT_BINARY_DIR}/basewatch.service.install\" \"\${_bw_unit}\")
  file(INSTALL DESTINATION \"\${_bw_unitdir}\" TYPE FILE RENAME basewatch.service
       FILES \"${PROJECT_BINARY_DIR}/basewatch.service.install\")
  set(_bw_conf \"\$ENV{DESTDIR}\${_bw_etc}/config.yaml\")
  if(EXISTS \"\${_bw_conf}\")
    message(STATUS \"Keeping: \${_bw_conf}\")
  else()
    file(INSTALL DESTINATION \"\${_bw_etc}\" TYPE FILE  # file(INSTALL) adds DESTDIR
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
         FILES \"${_bw_src}/systemd/config.yaml\")
  endif()
")

# ---- the .deb ----
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "basewatch")
set(CPACK_PACKAGE_VENDOR "basewatch")
set(CPACK_PACKAGE_CONTACT "basewatch maintainers <basewatch@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "watches container base images and fires rebuilds")
set(CPACK_PACKAGE_DESCRIPTION "basewatch watches the upstream base images your Dockerfiles build FROM with
HEAD requests, notices when a tag moves for a platform you build, works out
which images depend on it and fires the rebuilds (webhooks, CI pipelines,
local build commands) from a durable SQLite outbox. Runs as a hardened
systemd service.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Installed into a staging DESTDIR with the prefix /usr, whatever prefix the
# build was configured with, so /etc/basewatch lands in the package too.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX "/usr")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "admin")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/basewatch/basewatch")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# systemd-sysusers and systemd-tmpfiles in postinst; systemd (>= 250) for
# the unit's settings (ProtectProc=, PrivateIPC=, MONOTONIC_USEC=).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd (>= 250)")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "buildah, podman")

set(_bw_deb ${PROJECT_BINARY_DIR}/debian)
file(MAKE_DIRECTORY ${_bw_deb})
file(WRITE ${_bw_deb}/conffiles "/etc/basewatch/config.yaml\n")
file(WRITE ${_bw_deb}/postinst [=[#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
  systemd-sysusers basewatch.conf || true
  systemd-tmpfiles --create basewatch.conf || true
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # An upgrade restarts a running service; a first install leaves it to
    # the admin (edit the config, then systemctl enable --now basewatch).
    if [ -n "$2" ] && systemctl is-active --quiet basewatch.service; then
      systemctl try-restart basewatch.service || true
    fi
  fi
fi
exit 0
]=])
file(WRITE ${_bw_deb}/prerm [=[#!/bin/sh
set -e
if [ "$1" = "remove" ] && [ -d /run/systemd/system ]; then
  systemctl stop basewatch.service || true
  systemctl disable basewatch.service || true
fi
exit 0
]=])
file(WRITE ${_bw_deb}/postrm [=[#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
exit 0
]=])
file(CHMOD ${_bw_deb}/postinst ${_bw_deb}/prerm ${_bw_deb}/postrm
     PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${_bw_deb}/conffiles;${_bw_deb}/postinst;${_bw_deb}/prerm;${_bw_deb}/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)

# `make man` regenerates docs/basewatch.1 from the built binary's --help.
find_program(HELP2MAN_EXECUTABLE help2man)
if(HELP2MAN_EXECUTABLE)
  add_custom_target(man
    COMMAND ${PROJECT_SOURCE_DIR}/docs/make-man.sh $<TARGET_FILE:basewatch>
    DEPENDS basewatch
    COMMENT "Regenerating docs/basewatch.1 with help2man"
    VERBATIM)
endif()
