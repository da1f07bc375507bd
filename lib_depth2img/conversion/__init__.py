"""Converting SD2 depth models between the WebUI's single-file layout and diffusers folders (issue 6)."""
