"""The presentation contexts the listener accepts (PS3.7 D.3.3.2, PS3.8 9.3.2.2).

Pure data: the SOP classes, their roles and the transfer syntaxes in the order
the listener prefers them. docs/conformance.md lists the same, and a test holds
the two together.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    JPEG2000MC,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom.presentation import (
    AllStoragePresentationContexts,
    PresentationContext,
    build_context,
)

# PS3.6 Annex A: the verification and query/retrieve SOP classes served.
VERIFICATION = UID("1.2.840.10008.1.1")
PATIENT_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.1.1")
PATIENT_ROOT_MOVE = UID("1.2.840.10008.5.1.4.1.2.1.2")
PATIENT_ROOT_GET = UID("1.2.840.10008.5.1.4.1.2.1.3")
STUDY_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")
STUDY_ROOT_MOVE = UID("1.2.840.10008.5.1.4.1.2.2.2")
STUDY_ROOT_GET = UID("1.2.840.10008.5.1.4.1.2.2.3")

# Every listed syntax is accepted; a context gets the caller's first proposal
# that is listed here (in_requestor_order), so this order decides nothing.
STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    JPEGLSLossless,
    JPEG2000Lossless,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000MCLossless,
    JPEGLosslessSV1,
    JPEGLossless,
    RLELossless,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    JPEG2000,
    HTJ2K,
    JPEG2000MC,
)

# Command and identifier encodings for verification and query/retrieve.
NATIVE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)

STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(
    str(context.abstract_syntax) for context in AllStoragePresentationContexts
)

FIND_SOP_CLASSES: tuple[str, ...] = (PATIENT_ROOT_FIND, STUDY_ROOT_FIND)
MOVE_SOP_CLASSES: tuple[str, ...] = (PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE)
GET_SOP_CLASSES: tuple[str, ...] = (PATIENT_ROOT_GET, STUDY_ROOT_GET)
PATIENT_ROOT: frozenset[str] = frozenset(
    {PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET}
)


@dataclass(frozen=True)
class AcceptedContext:
    """One abstract syntax the listener accepts, with its transfer syntaxes.

    ``scp_role_for_caller`` tells whether a caller may take the SCP role by
    SCP/SCU Role Selection (PS3.7 D.3.3.4), as C-GET callers do for storage.
    """

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    scp_role_for_caller: bool = False


def accepted_contexts() -> list[AcceptedContext]:
    """Every abstract syntax the listener accepts, in a stable order."""
    contexts = [AcceptedContext(VERIFICATION, NATIVE_TRANSFER_SYNTAXES)]
    for sop_class in FIND_SOP_CLASSES + MOVE_SOP_CLASSES + GET_SOP_CLASSES:
        contexts.append(AcceptedContext(sop_class, NATIVE_TRANSFER_SYNTAXES))
    for sop_class in STORAGE_SOP_CLASSES:
        contexts.append(AcceptedContext(sop_class, STORAGE_TRANSFER_SYNTAXES, True))
    return contexts


def in_requestor_order(
    requested: list[PresentationContext], supported: list[PresentationContext]
) -> list[PresentationContext]:
    """Supported contexts re-ordered to prefer the caller's transfer syntaxes.

    pynetdicom accepts, for each proposed context, the first transfer syntax
    of its own list that the caller proposed. Ordering ours by the caller's
    proposal makes it accept the caller's first choice that we support
    (PS3.8 9.3.2.2 leaves the choice to the acceptor): a sender proposing
    its stored JPEG first then gets JPEG, not a conversion it cannot make.
    """
    wanted: dict[str, list[str]] = {}
    for context in requested:
        wanted.setdefault(str(context.abstract_syntax), []).extend(
            str(syntax) for syntax in context.transfer_syntax
        )
    ordered: list[PresentationContext] = []
    for context in supported:
        ours = [str(syntax) for syntax in context.transfer_syntax]
        theirs = wanted.get(str(context.abstract_syntax), [])
        first = [syntax for syntax in dict.fromkeys(theirs) if syntax in ours]
        rebuilt = build_context(
            str(context.abstract_syntax),
            [*first, *(syntax for syntax in ours if syntax not in first)],
        )
        rebuilt.scu_role, rebuilt.scp_role = context.scu_role, context.scp_role
        ordered.append(rebuilt)
    return ordered
