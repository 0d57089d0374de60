"""The extension as the Slicer Extensions Index reads it: the build description agrees with
itself and with the repository.

Checks, without Slicer, on the files the Index and CMake read (not on Python source): every
file the CMake files list exists and Resources/ ships beside the module; the catalog entry
(IBISAgent.json, the Index's JSON format) and the legacy IBISAgent.s4ext agree with
CMakeLists.txt; the licence file the Index looks for is there; the icon and screenshot the URLs
name are committed; the model weights a user may load are listed with their licences.
"""

import glob
import json
import os
import re
import struct
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODULE_DIR = os.path.join(REPO, "IBISAgentSlicer")
S4EXT_FILE = os.path.join(REPO, "IBISAgent.s4ext")
CATALOG_FILE = os.path.join(REPO, "IBISAgent.json")
#: The catalog entry schema the Index validates against (Slicer/ExtensionsIndex schemas/):
#: its version, its required keys and every key it allows (additionalProperties: false).
CATALOG_SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}
CATALOG_KEYS = CATALOG_REQUIRED | {"scm_revision", "scm_type", "build_dependencies", "dicom_support_rule",
                                   "build_subdirectory", "enabled", "tier"}


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


def _resources(module_cmake):
    keywords = {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS", "WITH_SUBDIR", "VERBOSE"}
    (call,) = module_cmake.calls("slicerMacroBuildScriptedModule")
    return module_cmake.keyword_values(call, "RESOURCES", keywords)


def test_resources_live_beside_the_module_and_all_ship(module_cmake):
    """Resources/ is next to IBISAgent.py, where ScriptedLoadableModuleWidget.resourcePath()
    looks, and the build copies every file there (screenshots excepted: the Index links them)."""
    assert not os.path.exists(os.path.join(REPO, "Resources"))
    listed = {os.path.normpath(r) for r in _resources(module_cmake)}
    shipped = {os.path.normpath(os.path.relpath(path, MODULE_DIR))
               for path in glob.glob(os.path.join(MODULE_DIR, "Resources", "**", "*"), recursive=True)
               if os.path.isfile(path) and os.sep + "Screenshots" + os.sep not in path}
    assert shipped and shipped <= listed, f"not shipped: {sorted(shipped - listed)}"
    assert {"Resources/UI/IBISAgent.ui", "Resources/Icons/IBISAgent.png"} <= {r.replace(os.sep, "/") for r in listed}
    # pyproject.toml (where IBISAgentLib.requirements reads what to install) goes next to the module.
    slicer_dirs = {"Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR": ["INSTALLED"], "MODULE_NAME": ["IBISAgent"]}
    evaluated = CMakeFile(module_cmake.path, slicer_dirs)
    keywords = {"FILES", "DESTINATION", "COMPONENT", "PROGRAMS", "RENAME"}
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


def test_icon_and_screenshot_urls_name_committed_pngs():
    fields = _s4ext()
    for url in [fields["iconurl"]] + fields["screenshoturls"].split():
        path = os.path.join(REPO, url.split("/main/", 1)[1])
        with open(path, "rb") as handle:
            header = handle.read(24)
        assert header[:8] == b"\x89PNG\r\n\x1a\n", url
        if url == fields["iconurl"]:
            assert struct.unpack(">II", header[16:24]) == (128, 128)


# -- the catalog entry, the licence, the model weights ----------------------------------------


def test_catalog_entry_follows_the_index_schema_and_agrees_with_cmake_and_s4ext(top_cmake):
    with open(CATALOG_FILE, "rb") as handle:
        raw = handle.read()
    assert b"\r" not in raw  # the Index refuses CR or CRLF line endings
    entry = json.loads(raw)
    assert os.path.splitext(os.path.basename(CATALOG_FILE))[0] == top_cmake.calls("project")[0][0]
    assert entry["$schema"] == CATALOG_SCHEMA
    assert CATALOG_REQUIRED <= set(entry) <= CATALOG_KEYS
    types = {"build_dependencies": list, "enabled": bool, "tier": int}
    for key, value in entry.items():
        assert isinstance(value, types.get(key, str)), key
    assert 1 <= entry["tier"] <= 5 and entry["scm_type"] == "git"
    variables, fields = top_cmake.variables, _s4ext()
    assert entry["category"] == variables["EXTENSION_CATEGORY"][0] == fields["category"]
    assert entry["build_subdirectory"] == variables["EXTENSION_BUILD_SUBDIRECTORY"][0] == fields["build_subdirectory"]
    depends = [] if variables["EXTENSION_DEPENDS"] == ["NA"] else variables["EXTENSION_DEPENDS"]
    assert entry["build_dependencies"] == depends and fields["depends"] == (" ".join(depends) or "NA")
    assert entry["scm_url"] == fields["scmurl"] and entry["scm_url"].startswith(variables["EXTENSION_HOMEPAGE"][0])
    assert entry["scm_revision"] == fields["scmrevision"]
    assert entry["enabled"] == (fields["enabled"] == "1")


def test_the_licence_file_the_index_looks_for_is_mit():
    with open(os.path.join(REPO, "LICENSE.txt"), encoding="utf-8") as handle:
        text = handle.read()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as handle:
        assert re.search(r'^license = "MIT"$', handle.read(), re.MULTILINE)


def test_every_loadable_model_is_listed_with_its_licence():
    sys.path.insert(0, MODULE_DIR)
    from ibisagent.engine import MODEL_TOOLS

    with open(os.path.join(REPO, "MODEL_WEIGHTS.md"), encoding="utf-8") as handle:
        rows = [line for line in handle if line.startswith("| ") and "---" not in line][1:]
    loaded_with = " ".join(row.split("|")[2] for row in rows)
    for option in [f"--segmenter {tool}" for tool in MODEL_TOOLS] + ["--policy qwen"]:
        assert option in loaded_with, option
    assert all(row.split("|")[4].strip() for row in rows)  # a licence, or what the source leaves unsaid
