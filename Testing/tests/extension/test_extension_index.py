"""The extension as the Slicer Extensions Index reads it: the build description agrees with
itself and with the repository.

Checks, without Slicer, on the files the Index and CMake read (not on Python source): every
file the CMake files list exists; IBISAgent.s4ext has every legacy field and agrees with
CMakeLists.txt; the icon is the committed 128 px PNG.
"""

import glob
import os
import re
import struct

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODULE_DIR = os.path.join(REPO, "IBISAgentSlicer")
S4EXT_FILE = os.path.join(REPO, "IBISAgent.s4ext")


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


LEGACY_S4EXT_FIELDS = (
    "scm",
    "scmurl",
    "scmrevision",
    "depends",
    "build_subdirectory",
    "homepage",
    "contributors",
    "category",
    "iconurl",
    "status",
    "description",
    "screenshoturls",
    "enabled",
)


# -- a small CMake reader -------------------------------------------------------------------


def _strip_comments(text):
    out = []
    for line in text.splitlines():
        quoted = False
        for index, char in enumerate(line):
            if char == '"':
                quoted = not quoted
            elif char == "#" and not quoted:
                line = line[:index]
                break
        out.append(line)
    return "\n".join(out)


def cmake_commands(path):
    """[(command name lower-case, [arguments])] of a CMakeLists.txt, quotes removed."""
    text = _strip_comments(_read(path))
    commands = []
    for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", text):
        depth, index, quoted = 1, match.end(), False
        while depth:
            char = text[index]
            if char == '"':
                quoted = not quoted
            elif not quoted and char == "(":
                depth += 1
            elif not quoted and char == ")":
                depth -= 1
            index += 1
        body = text[match.end() : index - 1]
        arguments = [quoted or bare for quoted, bare in re.findall(r'"((?:[^"\\]|\\.)*)"|([^\s"]+)', body)]
        commands.append((match.group(1).lower(), arguments))
    return commands


class CMakeFile:
    """Variables set in one CMakeLists.txt (set() and file(GLOB...) evaluated on disk)."""

    def __init__(self, path, variables=None):
        self.path = path
        self.source_dir = os.path.dirname(path)
        self.variables = dict(variables or {})
        self.variables["CMAKE_CURRENT_SOURCE_DIR"] = [self.source_dir]
        self.commands = cmake_commands(path)
        self.globs = {}
        for name, arguments in self.commands:
            if name == "set" and arguments:
                self.variables[arguments[0]] = self.expand(arguments[1:])
            elif name == "file" and arguments and arguments[0] in ("GLOB", "GLOB_RECURSE"):
                self._glob(arguments)

    def expand(self, arguments):
        values = []
        for argument in arguments:
            whole = re.fullmatch(r"\$\{(\w+)\}", argument)
            if whole:
                values.extend(self.variables.get(whole.group(1), []))
                continue
            values.append(
                re.sub(r"\$\{(\w+)\}", lambda m: ";".join(self.variables.get(m.group(1), [])), argument)
            )
        return values

    def _glob(self, arguments):
        mode, variable = arguments[0], arguments[1]
        rest = arguments[2:]
        relative = None
        patterns = []
        index = 0
        while index < len(rest):
            if rest[index] == "RELATIVE":
                relative = self.expand([rest[index + 1]])[0]
                index += 2
                continue
            if rest[index] in ("CONFIGURE_DEPENDS", "FOLLOW_SYMLINKS", "LIST_DIRECTORIES"):
                index += 2 if rest[index] == "LIST_DIRECTORIES" else 1
                continue
            patterns.extend(self.expand([rest[index]]))
            index += 1
        found = []
        for pattern in patterns:
            if mode == "GLOB_RECURSE":
                folder, name = os.path.split(pattern)
                matches = glob.glob(os.path.join(folder, "**", name), recursive=True)
            else:
                matches = glob.glob(pattern)
            self.globs[pattern] = matches
            found.extend(matches)
        if relative:
            found = [os.path.relpath(path, relative).replace(os.sep, "/") for path in sorted(found)]
        self.variables[variable] = found

    def calls(self, command):
        return [arguments for name, arguments in self.commands if name == command.lower()]

    def keyword_values(self, arguments, keyword, keywords):
        """The expanded values after `keyword` up to the next keyword."""
        values, active = [], False
        for argument in arguments:
            if argument in keywords:
                active = argument == keyword
                continue
            if active:
                values.extend(self.expand([argument]))
        return values


@pytest.fixture(scope="module")
def top_cmake():
    return CMakeFile(os.path.join(REPO, "CMakeLists.txt"))


@pytest.fixture(scope="module")
def module_cmake():
    return CMakeFile(os.path.join(MODULE_DIR, "CMakeLists.txt"))


def _s4ext():
    fields = {}
    for line in _read(S4EXT_FILE).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    return fields


# -- CMake ----------------------------------------------------------------------------------


def test_top_level_cmake_is_a_slicer_extension(top_cmake):
    names = [name for name, _ in top_cmake.commands]
    assert names[0] == "cmake_minimum_required"
    assert top_cmake.calls("project") == [["IBISAgent"]]
    assert ["Slicer", "REQUIRED"] in top_cmake.calls("find_package")
    includes = [arguments[0] for arguments in top_cmake.calls("include")]
    for required in (
        "${Slicer_USE_FILE}",
        "${Slicer_EXTENSION_GENERATE_CONFIG}",
        "${Slicer_EXTENSION_CPACK}",
    ):
        assert required in includes
    for variable in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CATEGORY",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
        "EXTENSION_DEPENDS",
    ):
        assert top_cmake.variables.get(variable), f"{variable} is not set"
    assert top_cmake.variables["EXTENSION_CATEGORY"] == ["Segmentation"]
    assert top_cmake.variables["EXTENSION_DEPENDS"] == ["NA"]
    assert not top_cmake.calls("project")[0][0].startswith("Slicer")


def test_every_subdirectory_cmake_adds_exists():
    for cmake_path in glob.glob(os.path.join(REPO, "**", "CMakeLists.txt"), recursive=True):
        if "/." in cmake_path.replace(os.sep, "/") or "/build/" in cmake_path:
            continue
        cmake = CMakeFile(cmake_path)
        for arguments in cmake.calls("add_subdirectory"):
            folder = os.path.join(cmake.source_dir, arguments[0])
            assert os.path.isfile(os.path.join(folder, "CMakeLists.txt")), f"{cmake_path}: {arguments[0]}"


def test_every_file_the_module_cmake_lists_exists(module_cmake):
    keywords = {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS", "WITH_SUBDIR", "VERBOSE"}
    (call,) = module_cmake.calls("slicerMacroBuildScriptedModule")
    scripts = module_cmake.keyword_values(call, "SCRIPTS", keywords)
    resources = module_cmake.keyword_values(call, "RESOURCES", keywords)
    assert "IBISAgent.py" in scripts
    assert "WITH_GENERIC_TESTS" in call
    for relative in scripts + resources:
        assert os.path.isfile(os.path.join(MODULE_DIR, relative)), relative
    for pattern, matches in module_cmake.globs.items():
        assert matches, f"glob {pattern} matches nothing"
    lib_scripts = module_cmake.variables["MODULE_LIB_SCRIPTS"]
    assert "ibisagent/__init__.py" in lib_scripts and "IBISAgentLib/__init__.py" in lib_scripts
    assert "ibisagent/protocol.py" in lib_scripts


def test_shared_resources_land_next_to_the_module(module_cmake):
    """Resources/ is at the top level; the module CMake copies it to <module dir>/Resources."""
    source_dir = module_cmake.variables["MODULE_SHARED_RESOURCES_DIR"][0]
    resources = module_cmake.variables["MODULE_SHARED_RESOURCES"]
    assert os.path.normpath(source_dir) == os.path.join(REPO, "Resources")
    assert "UI/IBISAgent.ui" in resources and "Icons/IBISAgent.png" in resources
    for relative in resources:
        assert os.path.isfile(os.path.join(source_dir, relative)), relative
    # Evaluated with stand-ins for Slicer's folders: the build tree gets <module dir>/Resources
    # (what resourcePath() joins to the module's folder), and so does the install tree.
    slicer_dirs = {"CMAKE_BINARY_DIR": ["BUILD"], "Slicer_QTSCRIPTEDMODULES_LIB_DIR": ["MODULES"],
                   "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR": ["INSTALLED"], "MODULE_NAME": ["IBISAgent"]}
    evaluated = CMakeFile(module_cmake.path, slicer_dirs)
    assert evaluated.variables["_module_build_resources_dir"] == ["BUILD/MODULES/Resources"]
    keywords = {"FILES", "DESTINATION", "COMPONENT", "PROGRAMS", "RENAME"}
    destinations = [evaluated.keyword_values(call, "DESTINATION", keywords)[0] for call in evaluated.calls("install")
                    if "FILES" in call]
    assert destinations and all(d.startswith("INSTALLED/Resources/") or d == "INSTALLED" for d in destinations)
    assert "INSTALLED/Resources/" in destinations
    # pyproject.toml (where IBISAgentLib.requirements reads what to install) goes next to the module.
    project = [call for call in evaluated.calls("install") if any(a.endswith("pyproject.toml") for a in evaluated.expand(call))]
    assert [evaluated.keyword_values(call, "DESTINATION", keywords) for call in project] == [["INSTALLED"]]
    assert os.path.isfile(evaluated.variables["MODULE_PROJECT_FILE"][0])


def test_python_tests_are_registered():
    module = CMakeFile(os.path.join(MODULE_DIR, "CMakeLists.txt"), {"MODULE_NAME": ["IBISAgent"]})
    registered = []
    for cmake_path in (
        os.path.join(MODULE_DIR, "CMakeLists.txt"),
        os.path.join(REPO, "Testing", "Python", "CMakeLists.txt"),
    ):
        cmake = CMakeFile(cmake_path, module.variables)
        for arguments in cmake.calls("slicer_add_python_unittest"):
            script = cmake.keyword_values(arguments, "SCRIPT", {"SCRIPT", "SLICER_ARGS", "TESTNAME_PREFIX"})[
                0
            ]
            path = os.path.join(cmake.source_dir, script)
            assert os.path.isfile(path), path
            registered.append(os.path.basename(path))
    assert sorted(registered) == ["IBISAgent.py", "IBISAgentSelfTest.py"]


# -- s4ext ----------------------------------------------------------------------------------


def test_s4ext_has_every_legacy_field():
    fields = _s4ext()
    for field in LEGACY_S4EXT_FIELDS:
        assert field in fields, f"s4ext lacks '{field}'"
        assert fields[field], f"s4ext field '{field}' is empty"


def test_s4ext_agrees_with_cmake(top_cmake):
    fields = _s4ext()
    name = os.path.splitext(os.path.basename(S4EXT_FILE))[0]
    assert name == top_cmake.calls("project")[0][0] == "IBISAgent"
    assert not name.startswith("Slicer")
    variables = top_cmake.variables
    assert fields["category"] == variables["EXTENSION_CATEGORY"][0] == "Segmentation"
    assert fields["description"] == variables["EXTENSION_DESCRIPTION"][0]
    assert fields["homepage"] == variables["EXTENSION_HOMEPAGE"][0]
    assert fields["contributors"] == variables["EXTENSION_CONTRIBUTORS"][0]
    assert fields["depends"] == variables["EXTENSION_DEPENDS"][0] == "NA"
    assert fields["iconurl"] == variables["EXTENSION_ICONURL"][0]
    assert fields["screenshoturls"].split() == " ".join(variables["EXTENSION_SCREENSHOTURLS"]).split()
    assert fields["status"] == variables["EXTENSION_STATUS"][0]
    assert fields["build_subdirectory"] == variables["EXTENSION_BUILD_SUBDIRECTORY"][0]
    assert fields["scm"] == "git"
    assert fields["scmurl"].startswith(fields["homepage"])
    assert fields["enabled"] in ("0", "1")
    for url in [fields["homepage"], fields["iconurl"]] + fields["screenshoturls"].split():
        assert url.startswith("https://") and "example" not in url, url


def test_icon_url_names_the_committed_128px_icon():
    fields = _s4ext()
    relative = fields["iconurl"].split("/main/", 1)[1]
    path = os.path.join(REPO, relative)
    with open(path, "rb") as handle:
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (128, 128)
